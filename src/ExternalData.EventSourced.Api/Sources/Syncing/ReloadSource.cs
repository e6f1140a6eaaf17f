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

/// <summary>A run to start: the fact for the schema's sync stream, the job's first event, and the message that runs it.</summary>
public sealed record SyncStart(SyncRunStarted RunStarted, SyncJobStarted JobStarted, RunSyncJob Run);

public static class SyncRuns
{
    /// <summary>
    /// The decision, pure: a schema already held by a running job starts nothing (one run per schema at a time); any
    /// other enabled schema starts a full run. Starting is an append on the schema's own sync stream, never the source's,
    /// so it neither bumps the source's version nor waits on its writes; two triggers racing on one schema collide on that
    /// stream's version, and the retried loser finds the winner's run.
    /// </summary>
    public static SyncStart? Start(Source source, SourceSchema schema, SchemaSync? state, string trigger, Caller caller, Guid jobId, DateTimeOffset now)
    {
        if (state?.RunningJobId is not null || !schema.Settings.ShouldSync || schema.Removed || source.IsDirect) return null;
        var syncType = schema.Settings.SyncType ?? SyncTypes.FullRefresh;
        // CDC and webhook schemas are fed by their own streams, not by runs of this engine.
        if (syncType is SyncTypes.Cdc or SyncTypes.Webhook) return null;
        var mode = ModeFor(schema.Settings, state, trigger);
        return new SyncStart(
            new SyncRunStarted(schema.Id, source.Id, jobId, schema.Name, syncType, mode, trigger, caller.Actor, caller.Channel, now),
            new SyncJobStarted(jobId, schema.Id, source.Id, schema.Name, syncType, mode, trigger, caller.Actor, caller.Channel, now),
            new RunSyncJob(caller.ProjectId, source.Id, schema.Id, jobId));
    }

    /// <summary>What a run does (SYNC.md §3): a cursor-based or xmin schema reads only what changed once a run has left it a
    /// watermark for the same cursor field (or a snapshot ceiling); before that, or after a resync, it loads everything.</summary>
    public static string ModeFor(SyncSettings settings, SchemaSync? state, string trigger) => settings.SyncType switch
    {
        _ when trigger == SyncTriggers.Resync || state?.Table is null => SyncModes.Full,
        SyncTypes.Incremental when state.Watermark is not null && state.WatermarkField == settings.IncrementalField => SyncModes.Incremental,
        SyncTypes.Append when state.Watermark is not null && state.WatermarkField == settings.IncrementalField => SyncModes.Append,
        SyncTypes.Xmin when state.XminCeiling is not null => SyncModes.Xmin,
        _ => SyncModes.Full,
    };
}

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

    public static (Checked<SyncRunsStarted>, OutgoingMessages) Handle(ReloadSource command, Checked<SyncTargets> targets, IDocumentSession session, DateTimeOffset now)
    {
        if (targets.Problem is { } problem) return (problem, []);
        var messages = new OutgoingMessages();
        var jobs = new List<Guid>();
        foreach (var (schema, stream) in targets.Value!.Schemas)
        {
            if (SyncRuns.Start(targets.Value.Source, schema, stream.Aggregate, SyncTriggers.Manual, command.Caller, Guid.CreateVersion7(now), now) is not { } start) continue;
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
