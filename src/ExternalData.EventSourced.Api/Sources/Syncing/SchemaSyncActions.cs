using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Shared;
using JasperFx.Events;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

// The schemas viewset's sync actions (SYNC.md §6, ref §5.22): reload, resync, cancel and delete_data of one schema. Each
// is a user's action recorded on the schema's sync stream (and a job's stream), with the user as actor, never on the
// source's stream: none of them moves the source's version, except delete_data, which also disables the schema.

/// <summary>What a sync action acts on: the schema, its source, and its sync stream fetched for an optimistic append.</summary>
public sealed record SchemaSyncTarget(Source Source, SourceSchema Schema, IEventStream<SchemaSync> Stream);

public enum SchemaSyncAction { Reload, Resync, Cancel, DeleteData }

/// <summary>POST reload/, POST resync/, POST cancel/ or DELETE delete_data/ on external_data_schemas/{id}.</summary>
public sealed record ActOnSchemaSync(Guid SchemaId, SchemaSyncAction Action) : ICommand
{
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

/// <summary>What the action did: the job it started, if any.</summary>
public sealed record SchemaSyncActed(Guid? JobId);

public static class SchemaSyncActions
{
    public const string NothingToCancel = "No running sync to cancel.";

    /// <summary>The decision, pure: the events for the sync stream and the jobs' streams, and the messages to send.</summary>
    public static (Checked<SchemaSyncActed> Outcome, IReadOnlyList<object> SyncEvents, IReadOnlyList<(Guid JobId, object Event, bool Starts)> JobEvents, RunSyncJob? Run)
        Decide(ActOnSchemaSync command, Source source, SourceSchema schema, SchemaSync? state, Guid newJobId, DateTimeOffset now, bool readable = true)
    {
        var caller = command.Caller;
        var running = state?.RunningJobId;
        var syncEvents = new List<object>();
        var jobEvents = new List<(Guid, object, bool)>();
        if (source.IsDirect && command.Action != SchemaSyncAction.Cancel)
            return (Problems.Validation("Direct query sources are queried live; they have nothing to sync.", null, "direct_source"), [], [], null);

        void CancelRunning(string reason)
        {
            if (running is not { } job) return;
            syncEvents.Add(new SyncRunCancelled(schema.Id, job, reason, caller.Actor, caller.Channel, now));
            jobEvents.Add((job, new SyncJobCancelled(job, reason, caller.Actor, caller.Channel, now), false));
        }

        RunSyncJob? Start(string trigger, SchemaSync? from)
        {
            if (SyncRuns.Start(source, schema, from, trigger, caller, newJobId, now, readable) is not { } start) return null;
            syncEvents.Add(start.RunStarted);
            jobEvents.Add((newJobId, start.JobStarted, true));
            return start.Run;
        }

        switch (command.Action)
        {
            case SchemaSyncAction.Reload:
                if (!schema.Settings.ShouldSync) return (Problems.Validation("The schema is paused. Enable it (should_sync) before running it.", "should_sync", "schema_paused"), [], [], null);
                var reload = Start(SyncTriggers.Manual, state);
                return (new SchemaSyncActed(reload is null ? running : newJobId), syncEvents, jobEvents, reload);
            case SchemaSyncAction.Resync:
                if (!schema.Settings.ShouldSync) return (Problems.Validation("The schema is paused. Enable it (should_sync) before resyncing it.", "should_sync", "schema_paused"), [], [], null);
                CancelRunning("Cancelled by a resync.");
                if (state is not null) syncEvents.Add(new SyncStateReset(schema.Id, false, "resync: the watermark is forgotten, the next run loads everything", caller.Actor, caller.Channel, now));
                // The cancelled run no longer holds the schema, so the resync's full load starts at once.
                var resync = Start(SyncTriggers.Resync, null);
                return (new SchemaSyncActed(resync is null ? null : newJobId), syncEvents, jobEvents, resync);
            case SchemaSyncAction.Cancel:
                if (running is null) return (Problems.Validation(NothingToCancel, null, "no_running_sync"), [], [], null);
                CancelRunning("Cancelled by a user.");
                return (new SchemaSyncActed(null), syncEvents, jobEvents, null);
            default:
                CancelRunning("Cancelled: the schema's synced data was deleted.");
                if (state is not null) syncEvents.Add(new SyncStateReset(schema.Id, true, "delete_data: the warehouse table was dropped", caller.Actor, caller.Channel, now));
                return (new SchemaSyncActed(null), syncEvents, jobEvents, null);
        }
    }
}

public static class ActOnSchemaSyncHandler
{
    public static async Task<Checked<SchemaSyncTarget>> LoadAsync(ActOnSchemaSync command, IDocumentSession session, CancellationToken ct)
    {
        if (await session.LoadAsync<SourceSchema>(command.SchemaId, ct) is not { Removed: false } schema) return Problems.NotFound();
        if (await session.LoadAsync<Source>(schema.SourceId, ct) is not { } source) return Problems.NotFound();
        return new SchemaSyncTarget(source, schema, await session.Events.FetchForWriting<SchemaSync>(schema.Id, ct));
    }

    public static (Checked<SchemaSyncActed>, OutgoingMessages) Handle(
        ActOnSchemaSync command, Checked<SchemaSyncTarget> target, IDocumentSession session, SourceTypes.SourceTypeRegistry registry, DateTimeOffset now)
    {
        if (target.Problem is { } problem) return (problem, []);
        var (source, schema, stream) = target.Value!;
        var (outcome, syncEvents, jobEvents, run) = SchemaSyncActions.Decide(command, source, schema, stream.Aggregate, Guid.CreateVersion7(now), now,
            SyncRuns.CanRead(registry.Get(source.SourceType)));
        if (outcome.Problem is not null) return (outcome, []);

        foreach (var e in syncEvents) stream.AppendOne(e);
        foreach (var (jobId, e, starts) in jobEvents)
            if (starts) session.Events.StartStream<SyncJob>(jobId, e);
            else session.Events.Append(jobId, e);
        var messages = new OutgoingMessages();
        if (run is not null) messages.Add(run);

        if (command.Action == SchemaSyncAction.DeleteData)
        {
            // The table goes right after the facts that say so commit, by a durable message sent in their transaction (a
            // crash in between drops it on redelivery); a table this service did not create for the schema is never dropped.
            if (stream.Aggregate?.Table is { } table) messages.Add(new DropWarehouseTable(command.Caller.ProjectId, schema.Id, table.Schema, table.Name));
            if (schema.Settings.ShouldSync)
            {
                var caller = command.Caller;
                var disabled = schema.Settings with { ShouldSync = false };
                session.Events.Append(source.Id, new SchemasBulkUpdated(source.Id, [new SchemaSettingsChange(schema.Id, schema.Name, disabled, ["should_sync"])],
                    ["should_sync"], caller.Actor, caller.Channel, now));
                messages.AddRange(SyncScheduler.Arm(caller.ProjectId, source.Id, [schema.Id]));
            }
        }

        return (outcome, messages);
    }
}

/// <summary>Drop a schema's warehouse table (delete_data), once its reset is committed.</summary>
public sealed record DropWarehouseTable(string ProjectId, Guid SchemaId, string Schema, string Table);

public static class DropWarehouseTableHandler
{
    public static async Task Handle(DropWarehouseTable drop, IDocumentStore store, SyncRunSettings settings, CancellationToken ct)
    {
        await using var connection = settings.Warehouse(store);
        await connection.OpenAsync(ct);
        await WarehouseTables.DropOwnedAsync(connection, drop.Schema, drop.Table, drop.SchemaId, ct);
    }
}

public static class SchemaSyncActionEndpoints
{
    private const string Route = "/api/projects/{project_id}/external_data_schemas/{id}";

    /// <summary>Run now; no second run while one is in progress (ref §5.22).</summary>
    [WolverinePost(Route + "/reload")]
    [ProducesResponseType(StatusCodes.Status200OK)]
    public static Task<IResult> Reload(string project_id, Guid id, HttpContext context, IMessageBus bus) => ActAsync(project_id, id, SchemaSyncAction.Reload, context, bus);

    /// <summary>Cancel a running job, forget the watermark, load everything again.</summary>
    [WolverinePost(Route + "/resync")]
    [ProducesResponseType(StatusCodes.Status200OK)]
    public static Task<IResult> Resync(string project_id, Guid id, HttpContext context, IMessageBus bus) => ActAsync(project_id, id, SchemaSyncAction.Resync, context, bus);

    /// <summary>Cancel the running job; 400 <c>No running sync to cancel.</c> when none runs (ref §5.22).</summary>
    [WolverinePost(Route + "/cancel")]
    [ProducesResponseType(StatusCodes.Status200OK)]
    public static Task<IResult> Cancel(string project_id, Guid id, HttpContext context, IMessageBus bus) => ActAsync(project_id, id, SchemaSyncAction.Cancel, context, bus);

    /// <summary>Drop the schema's warehouse table and reset its sync state; the schema stays, disabled.</summary>
    [WolverineDelete(Route + "/delete_data")]
    [ProducesResponseType(StatusCodes.Status200OK)]
    public static Task<IResult> DeleteData(string project_id, Guid id, HttpContext context, IMessageBus bus) => ActAsync(project_id, id, SchemaSyncAction.DeleteData, context, bus);

    private static async Task<IResult> ActAsync(string projectId, Guid id, SchemaSyncAction action, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<SchemaSyncActed>(new ActOnSchemaSync(id, action) { Caller = HttpCaller.From(context, projectId) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Ok();
    }
}
