using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

// The facts of syncing a schema (an upstream table) into the warehouse. They live in streams of their own, never the
// source's: a run never bumps a source's version nor waits on its writes (SYNC.md §4). Two streams:
// - the schema's sync stream (stream id = the schema id): which run holds the schema, and how each run ended. Starting a
//   run is an optimistic append here, so two triggers (or two nodes) can never run one schema at once;
// - the job's stream (stream id = the job id): the run's own log, batch by batch.
// No row data and no secret in any of them, ever. What the run itself records names the service's run loop
// (system:sync-runner, channel system) in its body and metadata; a start names whoever triggered it.

/// <summary>A run of a schema began: the schema is now held by <see cref="JobId"/>.</summary>
public sealed record SyncRunStarted(
    Guid SchemaId, Guid SourceId, Guid JobId, string SchemaName, string SyncType, string Mode, string Trigger,
    Actor StartedBy, string StartedVia, DateTimeOffset StartedAt) : IDomainEvent;

/// <summary>The run finished and its rows are in <see cref="Table"/>.</summary>
public sealed record SyncRunCompleted(
    Guid SchemaId, Guid JobId, long Rows, WarehouseTable Table, DateTimeOffset StartedAt, DateTimeOffset CompletedAt, Actor? RecordedBy = null, string? RecordedVia = null) : IDomainEvent;

/// <summary>The run failed: what the user reads (<see cref="Error"/>, never a secret), its class, and whether a later run
/// may well succeed. The warehouse is as the last completed run left it.</summary>
public sealed record SyncRunFailed(
    Guid SchemaId, Guid JobId, string Error, string ErrorClass, bool Retryable, DateTimeOffset FailedAt, Actor? RecordedBy = null, string? RecordedVia = null) : IDomainEvent;

/// <summary>A schema's warehouse table: its identity is the schema id; its name is fixed when first created.</summary>
public sealed record WarehouseTable(Guid Id, string Schema, string Name, IReadOnlyList<WarehouseTableColumn> Columns, long RowCount);

public sealed record WarehouseTableColumn(string Name, string Type, bool Nullable);

/// <summary>A job's first event: what it will do, for which schema, and who or what asked for it.</summary>
public sealed record SyncJobStarted(
    Guid JobId, Guid SchemaId, Guid SourceId, string SchemaName, string SyncType, string Mode, string Trigger,
    Actor StartedBy, string StartedVia, DateTimeOffset StartedAt) : IDomainEvent;

/// <summary>A batch of rows committed to the warehouse in the same transaction as this event: <see cref="Position"/>
/// is where the next batch starts (the last key read), so a crash re-reads at most the batch that was in flight.</summary>
public sealed record SyncBatchLoaded(
    Guid JobId, int Batch, long Rows, long TotalRows, string? Position, DateTimeOffset LoadedAt, Actor? RecordedBy = null, string? RecordedVia = null) : IDomainEvent;

public sealed record SyncJobCompleted(Guid JobId, long Rows, int Batches, DateTimeOffset CompletedAt, Actor? RecordedBy = null, string? RecordedVia = null) : IDomainEvent;

public sealed record SyncJobFailed(Guid JobId, string Error, string ErrorClass, DateTimeOffset FailedAt, Actor? RecordedBy = null, string? RecordedVia = null) : IDomainEvent;

public static class SyncTriggers
{
    public const string Manual = "manual";
    public const string Schedule = "schedule";
    public const string Create = "create";
}

public static class SyncModes
{
    public const string Full = "full";
}

public static class JobStatuses
{
    public const string Running = "Running";
    public const string Completed = "Completed";
    public const string Failed = "Failed";
    public const string Cancelled = "Cancelled";
}
