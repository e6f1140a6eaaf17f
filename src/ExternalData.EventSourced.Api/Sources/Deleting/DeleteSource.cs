using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>DELETE external_data_sources/{id}/ (API.md §3 row 5, ref §5.5): soft delete.</summary>
public sealed record DeleteSource(Guid SourceId) : ICommand
{
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

public sealed record SourceRemoved(Guid SourceId);

/// <summary>The delete use case, whichever channel calls it.</summary>
public static class DeleteSourceHandler
{
    public static Checked<SourceRemoved> Check(DeleteSource command, Source? source) =>
        source is null ? Problems.NotFound()
        : IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale ? stale
        : new SourceRemoved(source.Id);

    /// <summary>The check, and which of the source's tables are running, so the delete can stop them in its own transaction.</summary>
    public static async Task<(Checked<SourceRemoved>, RunningSyncs)> LoadAsync(DeleteSource command, Source? source, Marten.IQuerySession session, CancellationToken ct)
    {
        var removal = Check(command, source);
        if (removal.Problem is not null) return (removal, RunningSyncs.None);
        var running = await Marten.QueryableExtensions.ToListAsync(
            session.Query<SchemaSync>().Where(s => s.SourceId == source!.Id && s.RunningJobId != null).Select(s => new RunningSync(s.Id, s.RunningJobId!.Value)), ct);
        return (removal, new RunningSyncs(running));
    }

    /// <summary>
    /// The source leaves every read at once, and its running syncs are cancelled in the same transaction (each stops at
    /// its next batch boundary, its committed batches kept). A source with nothing outside this service to remove loses
    /// its data key in the same transaction, shredding every secret it ever stored. One with CDC needs its credentials
    /// once more to drop its slot and publication: the key stays until <see cref="CleanUpDeletedSource"/> — committed
    /// with the deletion, durable, so a crash cannot lose it — has done that and recorded it.
    /// </summary>
    public static (Checked<SourceRemoved>, Events, IMartenOp, OutgoingMessages, RunsCancelled) Handle(
        DeleteSource command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source, Checked<SourceRemoved> removal,
        RunningSyncs running, DateTimeOffset now)
    {
        if (removal.Problem is not null) return (removal, [], MartenOps.Nothing(), [], RunsCancelled.None);
        var caller = command.Caller;
        const string reason = "Cancelled: the source was deleted.";
        var cancelled = new RunsCancelled(running.Schemas.SelectMany(r => new (Guid, object)[]
        {
            (r.SchemaId, new SyncRunCancelled(r.SchemaId, r.JobId, reason, caller.Actor, caller.Channel, now)),
            (r.JobId, new SyncJobCancelled(r.JobId, reason, caller.Actor, caller.Channel, now)),
        }).ToList());

        var cleanup = DeletedSourceCleanup.Needed(source!);
        var deleted = new SourceDeleted(command.SourceId, caller.Actor, caller.Channel, now, CleanupPending: cleanup);
        if (!cleanup) return (removal, [deleted], MartenOps.Delete<DataKey>(command.SourceId), [], cancelled);
        return (removal, [deleted], MartenOps.Nothing(), [new CleanUpDeletedSource(command.SourceId, source!.Version + 1, 1, caller)], cancelled);
    }
}

/// <summary>The facts that stop a deleted source's runs, for their own streams (the schemas' sync streams, the jobs'),
/// appended in the delete's transaction.</summary>
public sealed record RunsCancelled(IReadOnlyList<(Guid StreamId, object Event)> Appends) : ISideEffect
{
    public static readonly RunsCancelled None = new([]);

    public void Execute(Marten.IDocumentSession session)
    {
        foreach (var (streamId, e) in Appends) session.Events.Append(streamId, e);
    }
}

/// <summary>The tables of a source whose run is in progress, and the job each one runs.</summary>
public sealed record RunningSyncs(IReadOnlyList<RunningSync> Schemas)
{
    public static readonly RunningSyncs None = new([]);
}

public sealed record RunningSync(Guid SchemaId, Guid JobId);

public static class DeleteSourceEndpoint
{
    [WolverineDelete("/api/projects/{project_id}/external_data_sources/{id}")]
    [ProducesResponseType(StatusCodes.Status204NoContent)]
    public static async Task<IResult> Delete(string project_id, Guid id, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<SourceRemoved>(
            new DeleteSource(id) { ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.NoContent();
    }
}
