using System.Text.Json.Serialization;
using ExternalData.EventSourced.Shared;
using Wolverine;

namespace ExternalData.EventSourced.Sources;

// What the sync use cases share: the messages that start a run and re-arm a schedule, and the pure decision that starts
// a run. Reload, the schemas viewset, the scheduler and the run loop all meet here, so none of them calls another.

/// <summary>Run a started job: sent by the trigger in the transaction that started it, to a durable local queue, so a
/// node that dies mid-run hands the job to the next node (or to itself after a restart), which runs it again.</summary>
public sealed record RunSyncJob(string ProjectId, Guid SourceId, Guid SchemaId, Guid JobId)
{
    /// <summary>What the run records, it records as the service's run loop.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Caller Recorder => Caller.System(ProjectId, "sync-runner", $"job-{JobId:N}", $"sync-runner {JobId}");
}

/// <summary>Look again at some schemas' schedules: sent in the transaction of the create, setup or schema update that
/// changed them, by a run that ended, and by the reconciler with the <see cref="Reason"/> it found them lost (then even a
/// schedule that looks armed is armed again). The service's scheduler, or its reconciler, is the caller.</summary>
public sealed record ArmSyncSchedules(string ProjectId, Guid SourceId, IReadOnlyList<Guid> SchemaIds, string? Reason = null) : ICommand
{
    [JsonIgnore] public Caller Caller => Reason is null
        ? SchedulerCaller(ProjectId, SourceId)
        : Caller.System(ProjectId, "schedule-reconciler", $"schedule-{SourceId:N}", $"schedule lost: {Reason}");

    /// <summary>The service's scheduler, acting for a project.</summary>
    public static Caller SchedulerCaller(string projectId, Guid sourceId) =>
        Caller.System(projectId, "scheduler", $"schedule-{sourceId:N}", "sync schedule");

    /// <summary>Delivered for the project (its tenant), whoever sends it.</summary>
    public DeliveryMessage<ArmSyncSchedules> ForProject() => this.WithDeliveryOptions(new DeliveryOptions { TenantId = ProjectId });
}

/// <summary>A run to start: the fact for the schema's sync stream, the job's first event, and the message that runs it.</summary>
public sealed record SyncStart(SyncRunStarted RunStarted, SyncJobStarted JobStarted, RunSyncJob Run);

public static class SyncRuns
{
    /// <summary>The watermark field of a webhook schema: its watermark is the source's time its last poll began.</summary>
    public const string WebhookCutoffField = "_ph_webhook_cutoff";

    /// <summary>Whether the engine can read tables of <paramref name="sourceType"/>: rows of a database
    /// (<see cref="SourceTypes.Sync.ITableReader"/>) or objects of an API (<see cref="SourceTypes.Sync.IObjectSource"/>).</summary>
    public static bool CanRead(SourceTypes.ISourceType? sourceType) => sourceType is SourceTypes.Sync.ITableReader or SourceTypes.Sync.IObjectSource;

    /// <summary>
    /// The decision, pure: a schema already held by a running job starts nothing (one run per schema at a time); any
    /// other enabled schema starts a full run. Starting is an append on the schema's own sync stream, never the source's,
    /// so it neither bumps the source's version nor waits on its writes; two triggers racing on one schema collide on that
    /// stream's version, and the retried loser finds the winner's run.
    /// </summary>
    public static SyncStart? Start(Source source, SourceSchema schema, SchemaSync? state, string trigger, Caller caller, Guid jobId, DateTimeOffset now, bool readable = true)
    {
        // readable: the engine can read the source's type (CanRead); a type it cannot read yet starts nothing.
        if (!readable || state?.RunningJobId is not null || !schema.Settings.ShouldSync || schema.Removed || source.IsDirect) return null;
        var syncType = schema.Settings.SyncType ?? SyncTypes.FullRefresh;
        // CDC schemas are fed by their own stream, not by runs of this engine.
        if (syncType is SyncTypes.Cdc) return null;
        var mode = ModeFor(schema.Settings, state, trigger);
        return new SyncStart(
            new SyncRunStarted(schema.Id, source.Id, jobId, schema.Name, syncType, mode, trigger, caller.Actor, caller.Channel, now),
            new SyncJobStarted(jobId, schema.Id, source.Id, schema.Name, syncType, mode, trigger, caller.Actor, caller.Channel, now),
            new RunSyncJob(caller.ProjectId, source.Id, schema.Id, jobId));
    }

    /// <summary>A CDC table's snapshot, pure: started by the source's CDC consumer, never by a reload or a schedule (the stream
    /// feeds the table). A snapshot a consumer left running (its node died) is the caller's to end first.</summary>
    public static SyncStart? StartCdcSnapshot(Source source, SourceSchema schema, SchemaSync? state, Caller caller, Guid jobId, DateTimeOffset now)
    {
        if (state?.RunningJobId is not null || !schema.Settings.ShouldSync || schema.Removed || schema.Settings.SyncType != SyncTypes.Cdc || source.Cdc is null) return null;
        return new SyncStart(
            new SyncRunStarted(schema.Id, source.Id, jobId, schema.Name, SyncTypes.Cdc, SyncModes.CdcSnapshot, SyncTriggers.Cdc, caller.Actor, caller.Channel, now),
            new SyncJobStarted(jobId, schema.Id, source.Id, schema.Name, SyncTypes.Cdc, SyncModes.CdcSnapshot, SyncTriggers.Cdc, caller.Actor, caller.Channel, now),
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
        // A webhook schema's first run (also its first after another sync type) polls every object; later runs drain the
        // deliveries stored since.
        SyncTypes.Webhook when state.WatermarkField == WebhookCutoffField => SyncModes.Webhook,
        _ => SyncModes.Full,
    };
}

/// <summary>The queue every node takes scheduled sync runs from (Wolverine's PostgreSQL transport, ADR 0050).</summary>
public static class SyncRunQueue
{
    public const string Name = "sync_runs";

    public static readonly Uri Uri = new($"postgresql://{Name}");

    /// <summary>Wolverine's table for the queue's waiting messages, in the transport's schema (the store's).</summary>
    public const string Table = "wolverine_queue_" + Name;

    /// <summary>Runs a node holds at most, running or waiting locally, before it stops taking more from the queue.</summary>
    public const int HeldPerNode = 3;

    /// <summary>First runs that start at once on the node that answered (a table created or enabled, as many as a node runs
    /// at a time): a burst of more (a setup of many tables) goes to the queue, for the nodes to share.</summary>
    public const int StartedWhereAsked = 2;
}
