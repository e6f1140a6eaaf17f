using JasperFx.Events;
using Marten.Events.Aggregation;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// A schema's sync state, folded from its sync stream and stored inline: which job holds it, how the last run ended, and
/// the warehouse table it fills. A trigger decides on it (one run at a time); list and retrieve read it for a schema's
/// <c>status</c>, <c>last_synced_at</c>, <c>latest_error</c> and <c>table</c> (ref §4.2).
/// </summary>
public sealed class SchemaSync
{
    public Guid Id { get; set; }
    // Marten sets this itself: the sync stream's version, which makes starting a run an optimistic append.
    public int Version { get; set; }
    public Guid SourceId { get; set; }
    public Guid? RunningJobId { get; set; }
    public DateTimeOffset? RunningSince { get; set; }
    public Guid? LastJobId { get; set; }
    public string? LastStatus { get; set; }
    public DateTimeOffset? LastRunAt { get; set; }
    /// <summary>When the last successful run started (ref §4.2 <c>last_synced_at</c>).</summary>
    public DateTimeOffset? LastSyncedAt { get; set; }
    public string? LatestError { get; set; }
    public WarehouseTable? Table { get; set; }
    /// <summary>Where the next cursor-based run starts: the highest committed value of <see cref="WatermarkField"/>.</summary>
    public string? Watermark { get; set; }
    public string? WatermarkField { get; set; }
    /// <summary>Where the next xmin run starts: the oldest source transaction open when the last one began.</summary>
    public long? XminCeiling { get; set; }
    /// <summary>When the next scheduled run is due; a due message that does not match it is stale.</summary>
    public DateTimeOffset? NextRunAt { get; set; }

    public static SchemaSync Create(SyncRunStarted e) => new SchemaSync { Id = e.SchemaId, SourceId = e.SourceId }.Started(e);

    public void Apply(SyncRunStarted e) => Started(e);

    public void Apply(SyncRunCompleted e)
    {
        if (RunningJobId != e.JobId) return;
        RunningJobId = null;
        RunningSince = null;
        LastStatus = JobStatuses.Completed;
        LastSyncedAt = e.StartedAt;
        LatestError = null;
        Table = e.Table;
        if (e.Watermark is not null) (Watermark, WatermarkField) = (e.Watermark, e.WatermarkField);
        if (e.XminCeiling is not null) XminCeiling = e.XminCeiling;
    }

    public void Apply(SyncWatermarkAdvanced e)
    {
        if (RunningJobId != e.JobId) return;
        (Watermark, WatermarkField) = (e.Watermark, e.Field);
    }

    public void Apply(SyncRunCancelled e)
    {
        if (RunningJobId != e.JobId) return;
        RunningJobId = null;
        RunningSince = null;
        LastStatus = JobStatuses.Cancelled;
    }

    public void Apply(SyncStateReset e)
    {
        (Watermark, WatermarkField, XminCeiling) = (null, null, null);
        if (!e.TableDropped) return;
        Table = null;
        LastStatus = null;
        LastSyncedAt = null;
        LatestError = null;
    }

    public void Apply(SyncScheduled e) => NextRunAt = e.DueAt;

    public void Apply(SyncRunFailed e)
    {
        if (RunningJobId != e.JobId) return;
        RunningJobId = null;
        RunningSince = null;
        LastStatus = JobStatuses.Failed;
        LatestError = e.Error;
    }

    private SchemaSync Started(SyncRunStarted e)
    {
        // A full load starts the cursor over: the watermark it records at its end is the one the next run starts from.
        if (e.Mode is SyncModes.Full or SyncModes.CdcSnapshot) (Watermark, WatermarkField, XminCeiling) = (null, null, null);
        NextRunAt = null;
        RunningJobId = e.JobId;
        RunningSince = e.StartedAt;
        LastJobId = e.JobId;
        LastRunAt = e.StartedAt;
        return this;
    }

    /// <summary>The schema's status as PostHog shows it: Running while a job runs, else how the last one ended.</summary>
    public string? Status => RunningJobId is not null ? JobStatuses.Running : LastStatus;
}

/// <summary>A job as the <c>jobs</c> list shows it (ref §4.3, SYNC.md §4), one document per job stream, inline so a job
/// is listed the moment it starts and its <c>rows_synced</c> grows batch by batch.</summary>
public sealed class SyncJob
{
    public Guid Id { get; set; }
    public Guid SchemaId { get; set; }
    public Guid SourceId { get; set; }
    public string SchemaName { get; set; } = "";
    public string SyncType { get; set; } = "";
    public string Mode { get; set; } = "";
    public string Trigger { get; set; } = "";
    public string? CreatedBy { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    public string Status { get; set; } = JobStatuses.Running;
    public long RowsSynced { get; set; }
    public int Batches { get; set; }
    /// <summary>The last committed batch's key or cursor: where a run delivered again after a crash resumes.</summary>
    public string? Position { get; set; }
    public string? LatestError { get; set; }
    public string? ErrorClass { get; set; }
    /// <summary>Why the run did other than it planned, when it did.</summary>
    public string? Note { get; set; }
}

public sealed partial class SyncJobProjection : SingleStreamProjection<SyncJob, Guid>
{
    public static SyncJob Create(SyncJobStarted e) => new()
    {
        Id = e.JobId, SchemaId = e.SchemaId, SourceId = e.SourceId, SchemaName = e.SchemaName, SyncType = e.SyncType, Mode = e.Mode,
        Trigger = e.Trigger, CreatedBy = e.StartedBy.Name, CreatedAt = e.StartedAt,
    };

    public static SyncJob Apply(SyncBatchLoaded e, SyncJob job)
    {
        job.RowsSynced = e.TotalRows;
        job.Batches = e.Batch;
        job.Position = e.Position;
        return job;
    }

    public static SyncJob Apply(SyncLoadResumed e, SyncJob job)
    {
        job.RowsSynced = e.TotalRows;
        job.Position = e.Position;
        return job;
    }

    // Terminal states absorb: a late or repeated finish never turns Failed into Completed or back.
    public static SyncJob Apply(SyncJobCompleted e, SyncJob job)
    {
        if (job.Status != JobStatuses.Running) return job;
        job.Status = JobStatuses.Completed;
        job.Mode = e.Mode ?? job.Mode;
        job.Note = e.Note;
        job.RowsSynced = e.Rows;
        job.Batches = e.Batches;
        job.FinishedAt = e.CompletedAt;
        return job;
    }

    public static SyncJob Apply(SyncJobCancelled e, SyncJob job)
    {
        if (job.Status != JobStatuses.Running) return job;
        job.Status = JobStatuses.Cancelled;
        job.LatestError = e.Reason;
        job.FinishedAt = e.CancelledAt;
        return job;
    }

    public static SyncJob Apply(SyncJobFailed e, SyncJob job)
    {
        if (job.Status != JobStatuses.Running) return job;
        job.Status = JobStatuses.Failed;
        job.LatestError = e.Error;
        job.ErrorClass = e.ErrorClass;
        job.FinishedAt = e.FailedAt;
        return job;
    }
}

/// <summary>The sync side of a source as list and retrieve show it: each schema's state, and the source's own status
/// derived from them (SYNC.md §4).</summary>
public sealed record SourceSyncView(IReadOnlyDictionary<Guid, SchemaSync> States, string Status, DateTimeOffset? LastRunAt, string? LatestError)
{
    public static readonly SourceSyncView None = new(new Dictionary<Guid, SchemaSync>(), "Running", null, null);
}

public static class SyncViews
{
    /// <summary>Two small queries in one round trip for a whole page of sources: their schemas' sync states, and which schemas are enabled.</summary>
    public static async Task<IReadOnlyDictionary<Guid, SourceSyncView>> ForSourcesAsync(Marten.IQuerySession session, Guid[] sourceIds, CancellationToken ct)
    {
        var batch = session.CreateBatchQuery();
        var statesRead = batch.Query<SchemaSync>().Where(s => sourceIds.Contains(s.SourceId)).ToList();
        var enabledRead = batch.Query<SourceSchema>()
            .Where(s => sourceIds.Contains(s.SourceId) && !s.Removed && s.Settings.ShouldSync).Select(s => new EnabledSchema(s.Id, s.SourceId)).ToList();
        await batch.Execute(ct);
        var (states, enabled) = (await statesRead, await enabledRead);
        var bySource = states.ToLookup(s => s.SourceId);
        var enabledBySource = enabled.ToLookup(s => s.SourceId, s => s.Id);
        return sourceIds.ToDictionary(id => id, id => Derive(bySource[id].ToDictionary(s => s.Id), enabledBySource[id].ToHashSet()));
    }

    private sealed record EnabledSchema(Guid Id, Guid SourceId);

    /// <summary>Running while any job runs; Error when the latest run of an enabled schema failed, or of one disabled since
    /// (the service disables a schema whose failure only a person can fix, and the source must not look idle for it);
    /// Completed when every enabled schema's latest run completed; Paused when none is enabled; before any run, PostHog's
    /// stored "Running".</summary>
    public static SourceSyncView Derive(Dictionary<Guid, SchemaSync> states, HashSet<Guid> enabled)
    {
        var runs = states.Values.Where(s => s.LastRunAt is not null).ToList();
        var latest = runs.Where(s => s.LatestError is not null).MaxBy(s => s.LastRunAt);
        var status = runs.Any(s => s.RunningJobId is not null) ? JobStatuses.Running
            : runs.Any(s => s.LastStatus == JobStatuses.Failed) ? "Error"
            : enabled.Count == 0 ? "Paused"
            : enabled.All(id => states.GetValueOrDefault(id)?.LastStatus == JobStatuses.Completed) ? JobStatuses.Completed
            : "Running";
        return new SourceSyncView(states, status, runs.Max(s => s.LastRunAt), latest?.LatestError);
    }

    public static SourceDetails WithSync(this SourceDetails source, SourceSyncView view)
    {
        source.Status = view.Status;
        source.LastRunAt = view.LastRunAt;
        source.LatestError = view.LatestError;
        return source;
    }

    /// <summary>A schema's sync fields (ref §4.2): Paused while disabled, unless the service disabled it after a failure it
    /// cannot retry, which stays Failed so the user sees why; null before its first run.</summary>
    public static SchemaDetails WithSync(this SchemaDetails schema, SchemaSync? state)
    {
        if (state is null) return schema;
        schema.Status = !schema.ShouldSync && state.RunningJobId is null && state.LastStatus != JobStatuses.Failed ? "Paused" : state.Status;
        schema.LastSyncedAt = state.LastSyncedAt;
        schema.LatestError = state.LatestError;
        schema.NextSyncAt = schema.ShouldSync ? state.NextRunAt : null;
        schema.Table = state.Table is { } t
            ? new SchemaTable(t.Id, t.Name, t.Columns.Select(c => new SchemaTableColumn(c.Name, c.Type, c.Nullable)).ToList(), t.RowCount, t.Schema)
            : null;
        return schema;
    }
}

/// <summary>A schema's warehouse table as the API shows it (ref §4.2 <c>table</c>, [beyond] <c>schema</c>).</summary>
public sealed record SchemaTable(Guid Id, string Name, IReadOnlyList<SchemaTableColumn> Columns, long RowCount, string Schema);

public sealed record SchemaTableColumn(string Name, string Type, bool Nullable);
