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
    /// <summary>Also which of its tables are running, so the delete can stop them in its own transaction.</summary>
    public static async Task<(Checked<SourceRemoved>, RunningSyncs)> LoadAsync(DeleteSource command, Source? source, Marten.IQuerySession session, CancellationToken ct)
    {
        if (source is null) return (Problems.NotFound(), RunningSyncs.None);
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return (stale, RunningSyncs.None);
        var running = await Marten.QueryableExtensions.ToListAsync(
            session.Query<SchemaSync>().Where(s => s.SourceId == source.Id && s.RunningJobId != null).Select(s => new RunningSync(s.Id, s.RunningJobId!.Value)), ct);
        return (new SourceRemoved(source.Id), new RunningSyncs(running));
    }

    /// <summary>
    /// The source leaves every read at once, and its running syncs are cancelled in the same transaction (each stops at
    /// its next batch boundary, its committed batches kept). A source with nothing outside this service to remove loses
    /// its data key in the same transaction, shredding every secret it ever stored. One with CDC needs its credentials
    /// once more to drop its slot and publication: the key stays until <see cref="CleanUpDeletedSource"/> — committed
    /// with the deletion, durable, so a crash cannot lose it — has done that and recorded it.
    /// </summary>
    public static (Checked<SourceRemoved>, Events, IMartenOp, OutgoingMessages) Handle(
        DeleteSource command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source, Checked<SourceRemoved> removal,
        RunningSyncs running, Marten.IDocumentSession session, DateTimeOffset now)
    {
        if (removal.Problem is not null) return (removal, [], MartenOps.Nothing(), []);
        var caller = command.Caller;
        const string reason = "Cancelled: the source was deleted.";
        foreach (var (schemaId, jobId) in running.Schemas)
        {
            session.Events.Append(schemaId, new SyncRunCancelled(schemaId, jobId, reason, caller.Actor, caller.Channel, now));
            session.Events.Append(jobId, new SyncJobCancelled(jobId, reason, caller.Actor, caller.Channel, now));
        }

        var cleanup = DeletedSourceCleanup.Needed(source!);
        var deleted = new SourceDeleted(command.SourceId, caller.Actor, caller.Channel, now, CleanupPending: cleanup);
        if (!cleanup) return (removal, [deleted], MartenOps.Delete<DataKey>(command.SourceId), []);
        return (removal, [deleted], MartenOps.Nothing(), [new CleanUpDeletedSource(command.SourceId, source!.Version + 1, 1, caller)]);
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
