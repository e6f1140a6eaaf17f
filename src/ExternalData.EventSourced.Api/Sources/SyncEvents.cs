using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

// The facts of syncing a schema (an upstream table) into the warehouse. They live in streams of their own, never the
// source's: a run never bumps a source's version nor waits on its writes (SYNC.md §4). Two streams:
// - the schema's sync stream (stream id = the schema id): which run holds the schema, and how each run ended. Starting a
//   run is an optimistic append here, so two triggers (or two nodes) can never run one schema at once;
// - the job's stream (stream id = the job id): the run's own log, batch by batch.
// No row data and no secret in any of them, ever. What the run itself records names the service's run loop
// (system:sync-runner, channel system) in its body and metadata; a start names whoever triggered it.

/// <summary>A fact of a sync stream or a job's stream: shown by <c>jobs/</c> and a schema's status, not by the audit feed.</summary>
public interface ISyncFact : IDomainEvent;

/// <summary>A run of a schema began: the schema is now held by <see cref="JobId"/>.</summary>
public sealed record SyncRunStarted(
    Guid SchemaId, Guid SourceId, Guid JobId, string SchemaName, string SyncType, string Mode, string Trigger,
    Actor StartedBy, string StartedVia, DateTimeOffset StartedAt) : ISyncFact;

/// <summary>The run finished and its rows are in <see cref="Table"/>. A cursor-based run's next start is
/// <see cref="Watermark"/> (the highest <see cref="WatermarkField"/> value it committed, or the highest upstream when its
/// full load began); an xmin run's is <see cref="XminCeiling"/>, the oldest source transaction open when it began.</summary>
public sealed record SyncRunCompleted(
    Guid SchemaId, Guid JobId, long Rows, WarehouseTable Table, DateTimeOffset StartedAt, DateTimeOffset CompletedAt, Actor? RecordedBy = null, string? RecordedVia = null,
    string? Watermark = null, string? WatermarkField = null, long? XminCeiling = null) : ISyncFact;

/// <summary>A batch of an incremental or append run committed with this event: the rows up to <see cref="Watermark"/> are in
/// the warehouse, so a crash after it never re-appends them.</summary>
public sealed record SyncWatermarkAdvanced(Guid SchemaId, Guid JobId, int Batch, string Field, string Watermark, DateTimeOffset AdvancedAt, Actor? RecordedBy = null, string? RecordedVia = null) : ISyncFact;

/// <summary>The run was stopped before its end (a user's cancel or resync, or the schema disabled): the warehouse keeps
/// what committed batches wrote (a full refresh's staging table is dropped, the previous table stays).</summary>
public sealed record SyncRunCancelled(Guid SchemaId, Guid JobId, string Reason, Actor CancelledBy, string CancelledVia, DateTimeOffset CancelledAt) : ISyncFact;

/// <summary>The schema's sync state was forgotten: the watermark always, the warehouse table too when
/// <see cref="TableDropped"/> (delete_data). The next run is a full load.</summary>
public sealed record SyncStateReset(Guid SchemaId, bool TableDropped, string Reason, Actor ResetBy, string ResetVia, DateTimeOffset ResetAt) : ISyncFact;

/// <summary>The schema's next scheduled run is due at <see cref="DueAt"/> (null: none, the schema is manual only or disabled).
/// <see cref="Reason"/> is set when the reconciler armed it again because the schedule was lost, and says how.</summary>
public sealed record SyncScheduled(
    Guid SchemaId, Guid SourceId, DateTimeOffset? DueAt, string Frequency, DateTimeOffset ScheduledAt, Actor? RecordedBy = null, string? RecordedVia = null, string? Reason = null) : ISyncFact;

/// <summary>The run failed: what the user reads (<see cref="Error"/>, never a secret), its class, and whether a later run
/// may well succeed. The warehouse is as the last completed run left it.</summary>
public sealed record SyncRunFailed(
    Guid SchemaId, Guid JobId, string Error, string ErrorClass, bool Retryable, DateTimeOffset FailedAt, Actor? RecordedBy = null, string? RecordedVia = null) : ISyncFact;

/// <summary>A schema's warehouse table: its identity is the schema id; its name is fixed when first created.</summary>
public sealed record WarehouseTable(Guid Id, string Schema, string Name, IReadOnlyList<WarehouseTableColumn> Columns, long RowCount);

public sealed record WarehouseTableColumn(string Name, string Type, bool Nullable);

/// <summary>A job's first event: what it will do, for which schema, and who or what asked for it.</summary>
public sealed record SyncJobStarted(
    Guid JobId, Guid SchemaId, Guid SourceId, string SchemaName, string SyncType, string Mode, string Trigger,
    Actor StartedBy, string StartedVia, DateTimeOffset StartedAt) : ISyncFact;

/// <summary>A batch of rows committed to the warehouse in the same transaction as this event: <see cref="Position"/>
/// is where the next batch starts (the last key read), so a crash re-reads at most the batch that was in flight.</summary>
public sealed record SyncBatchLoaded(
    Guid JobId, int Batch, long Rows, long TotalRows, string? Position, DateTimeOffset LoadedAt, Actor? RecordedBy = null, string? RecordedVia = null) : ISyncFact;

/// <summary>A full load went on in a new read of the source (another node after a crash, or a reconnect) from what earlier
/// batches committed, in one transaction with this event: of those rows <see cref="KeptRows"/> were unchanged upstream and
/// stayed, <see cref="DroppedRows"/> were deleted or changed upstream since (or loaded by a batch whose events never
/// committed) and went, and <see cref="ReadAgainRows"/> — rows written upstream since in the part already loaded — were read
/// again. The load goes on after <see cref="Position"/>; nothing else of the loaded part is read twice.</summary>
public sealed record SyncLoadResumed(
    Guid JobId, int Batches, long KeptRows, long DroppedRows, long ReadAgainRows, long TotalRows, string Position, DateTimeOffset ResumedAt,
    Actor? RecordedBy = null, string? RecordedVia = null) : ISyncFact;

/// <summary>The job ended well. <see cref="Mode"/> is set when the run did other than it planned (a full load instead of
/// only the changes), and <see cref="Note"/> says why.</summary>
public sealed record SyncJobCompleted(
    Guid JobId, long Rows, int Batches, DateTimeOffset CompletedAt, Actor? RecordedBy = null, string? RecordedVia = null, string? Mode = null, string? Note = null) : ISyncFact;

public sealed record SyncJobFailed(Guid JobId, string Error, string ErrorClass, DateTimeOffset FailedAt, Actor? RecordedBy = null, string? RecordedVia = null) : ISyncFact;

public sealed record SyncJobCancelled(Guid JobId, string Reason, Actor CancelledBy, string CancelledVia, DateTimeOffset CancelledAt) : ISyncFact;

public static class SyncTriggers
{
    public const string Manual = "manual";
    public const string Schedule = "schedule";
    public const string Create = "create";
    public const string Resync = "resync";
    /// <summary>A CDC table's snapshot, started by the source's CDC consumer.</summary>
    public const string Cdc = "cdc";
}

public static class SyncModes
{
    public const string Full = "full";
    public const string Incremental = "incremental";
    public const string Append = "append";
    public const string Xmin = "xmin";
    public const string CdcSnapshot = "cdc_snapshot";
    /// <summary>A webhook schema's run after its first: the stored deliveries drained into the table.</summary>
    public const string Webhook = "webhook";
}

public static class JobStatuses
{
    public const string Running = "Running";
    public const string Completed = "Completed";
    public const string Failed = "Failed";
    public const string Cancelled = "Cancelled";
}
