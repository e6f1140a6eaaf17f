using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Shared;
using JasperFx.Events;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/{id}/reload/ (SYNC.md §6, ref §5.20): run every enabled schema now.</summary>
public sealed record ReloadSource(Guid SourceId) : ICommand
{
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

/// <summary>What a trigger started: one job per schema that was not already running.</summary>
public sealed record SyncRunsStarted(IReadOnlyList<Guid> JobIds);

/// <summary>The schemas a trigger may start, each with its sync stream fetched for an optimistic append.</summary>
public sealed record SyncTargets(Source Source, IReadOnlyList<(SourceSchema Schema, IEventStream<SchemaSync> Stream)> Schemas);

public static class ReloadSourceHandler
{
    public static async Task<Checked<SyncTargets>> LoadAsync(ReloadSource command, IDocumentSession session, CancellationToken ct)
    {
        // The source is read, not locked: a reload never waits on (nor blocks) a write to the source.
        if (await session.LoadAsync<Source>(command.SourceId, ct) is not { } source) return Problems.NotFound();
        if (source.IsDirect) return Problems.Validation("Direct query sources are queried live; they have nothing to sync.", null, "direct_source");
        var schemas = await session.Query<SourceSchema>()
            .Where(s => s.SourceId == command.SourceId && !s.Removed && s.Settings.ShouldSync).OrderBy(s => s.Name).ToListAsync(ct);
        var targets = new List<(SourceSchema, IEventStream<SchemaSync>)>();
        foreach (var schema in schemas) targets.Add((schema, await session.Events.FetchForWriting<SchemaSync>(schema.Id, ct)));
        return new SyncTargets(source, targets);
    }

    public static (Checked<SyncRunsStarted>, OutgoingMessages) Handle(
        ReloadSource command, Checked<SyncTargets> targets, IDocumentSession session, SourceTypes.SourceTypeRegistry registry, DateTimeOffset now)
    {
        if (targets.Problem is { } problem) return (problem, []);
        var messages = new OutgoingMessages();
        var jobs = new List<Guid>();
        foreach (var (schema, stream) in targets.Value!.Schemas)
        {
            var readable = SyncRuns.CanRead(registry.Get(targets.Value.Source.SourceType));
            if (SyncRuns.Start(targets.Value.Source, schema, stream.Aggregate, SyncTriggers.Manual, command.Caller, Guid.CreateVersion7(now), now, readable) is not { } start) continue;
            stream.AppendOne(start.RunStarted);
            session.Events.StartStream<SyncJob>(start.JobStarted.JobId, start.JobStarted);
            messages.Add(start.Run);
            jobs.Add(start.JobStarted.JobId);
        }

        return (new SyncRunsStarted(jobs), messages);
    }
}

public static class ReloadSourceEndpoint
{
    /// <summary>200 with an empty body, as PostHog answers; the runs go on in the background (see <c>jobs/</c>).</summary>
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/reload")]
    [ProducesResponseType(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<SyncRunsStarted>(new ReloadSource(id) { Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Ok();
    }
}
