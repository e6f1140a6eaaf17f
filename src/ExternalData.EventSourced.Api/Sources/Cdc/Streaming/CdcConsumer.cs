using System.Threading.Channels;
using ChangeChannel = System.Threading.Channels.Channel;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Messaging;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using ExternalData.EventSourced.SourceTypes.Sync;
using Marten;
using Npgsql;

namespace ExternalData.EventSourced.Sources;

/// <summary>How a CDC consumer batches (<c>Cdc:*</c>): the bound on one warehouse statement, how long a committed change may
/// wait for company before it is applied, how often progress becomes an event, and when a quiet stream acknowledges the
/// server's position.</summary>
public sealed class CdcStreamingSettings
{
    public int ChunkSize { get; set; } = 5_000;
    public int MaxChangesPerCommit { get; set; } = 50_000;
    public TimeSpan FlushInterval { get; set; } = TimeSpan.FromMilliseconds(200);
    public TimeSpan ProgressEventInterval { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan IdleAcknowledgeAfter { get; set; } = TimeSpan.FromSeconds(1);
    public TimeSpan CheckTablesEvery { get; set; } = TimeSpan.FromSeconds(5);
    public IReadOnlyList<TimeSpan> RetryDelays { get; set; } = [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(30)];
}

/// <summary>
/// A source's CDC consumer (SYNC.md §3.6, ADR 0047): first each CDC table that has none gets a snapshot lined up with the
/// stream (a job of mode <c>cdc_snapshot</c>), then the slot's changes are applied to the warehouse, transaction by
/// transaction, a batch of them per warehouse commit with the stream position in the same commit; only then is the slot told,
/// so it never holds WAL for changes the warehouse has and never releases WAL for changes it has not. A table's change is
/// applied only when its transaction committed at or after that table's snapshot point; earlier ones are in the snapshot.
/// Runs on one node at a time (a Wolverine agent, <see cref="CdcConsumerAgents"/>).
/// </summary>
public sealed class CdcConsumer(string projectId, Guid sourceId, IServiceProvider services, ILogger logger)
{
    private readonly IDocumentStore _store = services.GetRequiredService<IDocumentStore>();
    private readonly SourceTypeRegistry _registry = services.GetRequiredService<SourceTypeRegistry>();
    private readonly SecretsCipher _cipher = services.GetRequiredService<SecretsCipher>();
    private readonly TimeProvider _clock = services.GetRequiredService<TimeProvider>();
    private readonly SyncRunSettings _runs = services.GetRequiredService<SyncRunSettings>();
    private readonly CdcStreamingSettings _settings = services.GetRequiredService<CdcStreamingSettings>();
    private string? _lastFailure;
    private static readonly TimeSpan SnapshotRetryCooldown = TimeSpan.FromMinutes(1);

    private ILogger Logger => logger;

    public Caller Recorder => Caller.System(projectId, "cdc-consumer", $"cdc-{sourceId:N}", $"cdc consumer of {sourceId}");

    /// <summary>Consumes until stopped; a passing failure is retried with back-off, a lasting one recorded once and retried slowly.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        var attempt = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (await SessionAsync(ct)) attempt = 0;
                else await WaitForChangeAsync(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (SourceReadException e) when (e.Retryable)
            {
                var delay = _settings.RetryDelays[Math.Min(attempt++, _settings.RetryDelays.Count - 1)];
                logger.LogWarning("CDC consumer of source {Source}: {Error} ({Class}); trying again in {Delay}", sourceId, e.Message, e.ErrorClass, delay);
                await Task.Delay(delay, _clock, ct);
            }
            catch (SourceReadException e)
            {
                logger.LogError("CDC consumer of source {Source} stopped: {Error} ({Class})", sourceId, e.Message, e.ErrorClass);
                await RecordFailureAsync(e, ct);
                await Task.Delay(_settings.RetryDelays[^1] * 2, _clock, ct);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                var delay = _settings.RetryDelays[Math.Min(attempt++, _settings.RetryDelays.Count - 1)];
                logger.LogError(e, "CDC consumer of source {Source} failed on the service's side; trying again in {Delay}", sourceId, delay);
                await Task.Delay(delay, _clock, ct);
            }
        }
    }

    /// <summary>The CDC tables of the source as the consumer sees them: schema, sync state, and the table's qualified name.</summary>
    private sealed record CdcTable(SourceSchema Schema, SchemaSync? State, string Qualified)
    {
        /// <summary><c>cdc_table_mode</c> <c>cdc_only</c> or <c>both</c>: every change is also a row version in <c>&lt;table&gt;_cdc</c>.
        /// (<c>cdc_only</c> keeps the table too: it is the state a version's untouched values are taken from.)</summary>
        public bool HasHistory => Schema.Settings.CdcTableMode is "cdc_only" or "both";

        public ulong? SnapshotPoint => State is { WatermarkField: RunSyncJobHandler.CdcPositionField, Watermark: { } point, Table: not null } ? Lsn.Parse(point) : null;
    }

    private sealed record Plan(Source Source, CdcSettings Cdc, System.Text.Json.Nodes.JsonObject Config, IReadOnlyList<CdcTable> Tables, string Signature);

    /// <summary>The streams the last plan was folded from (the source's and its CDC tables' sync streams), and their mark then.</summary>
    private Guid[] _planStreams = [sourceId];
    private long _planMark = -1;

    /// <summary>
    /// Whether anything a plan is folded from may have changed since the last plan: one indexed read of the versions of the
    /// streams it came from (a version only grows), so an idle consumer costs one cheap query per check, whatever its table
    /// count. Taken before a plan reads, a change made while it reads shows at the next check.
    /// </summary>
    private async Task<long> MarkAsync(CancellationToken ct)
    {
        await using var query = _store.QuerySession(projectId);
        var marks = await query.AdvancedSql.QueryAsync<long>(
            $"SELECT coalesce(sum(version), 0)::bigint FROM {_store.Options.Events.DatabaseSchemaName}.mt_streams WHERE tenant_id = ? AND id = ANY(?)", ct, projectId, _planStreams);
        return marks.Count > 0 ? marks[0] : 0;
    }

    private async Task<bool> ChangedSinceLastPlanAsync(CancellationToken ct) => await MarkAsync(ct) != _planMark;

    /// <summary>With nothing to consume, waits until the plan's streams change (or a failed snapshot's cool-down ends).</summary>
    private async Task WaitForChangeAsync(CancellationToken ct)
    {
        var since = _clock.GetUtcNow();
        do await Task.Delay(_settings.CheckTablesEvery, _clock, ct);
        while (!await ChangedSinceLastPlanAsync(ct) && _clock.GetUtcNow() - since < SnapshotRetryCooldown);
    }

    private async Task<Plan?> PlanAsync(CancellationToken ct)
    {
        var mark = await MarkAsync(ct);
        var plan = await ReadPlanAsync(ct);
        (_planStreams, _planMark) = ([sourceId, .. plan?.Tables.Select(t => t.Schema.Id) ?? []], mark);
        return plan;
    }

    private async Task<Plan?> ReadPlanAsync(CancellationToken ct)
    {
        await using var query = _store.QuerySession(projectId);
        if (await query.LoadAsync<Source>(sourceId, ct) is not { Cdc: { } cdc } source) return null;
        if (_registry.Get(source.SourceType) is not IChangeDataCapture capture) return null;
        var config = await StoredConfig.LoadAsync(source, query, _cipher, ct);
        var schemas = await query.Query<SourceSchema>()
            .Where(s => s.SourceId == sourceId && !s.Removed && s.Settings.ShouldSync && s.Settings.SyncType == SyncTypes.Cdc).ToListAsync(ct);
        // Each table's sync state is folded from its own stream, not read from the projected document: an operator rebuilding
        // that projection beside a running service empties it for a while, and must not make every CDC table load again.
        var states = new Dictionary<Guid, SchemaSync>();
        foreach (var schema in schemas)
            if (await query.Events.AggregateStreamAsync<SchemaSync>(schema.Id, token: ct) is { } state) states[schema.Id] = state;
        var tables = schemas.OrderBy(s => s.Name, StringComparer.Ordinal)
            .Select(s => new CdcTable(s, states.GetValueOrDefault(s.Id), capture.QualifiedTable(config, s.Name))).ToList();
        return new Plan(source, cdc, config, tables, Signature(tables));
    }

    private static string Signature(IEnumerable<CdcTable> tables) =>
        string.Join(';', tables.Select(t => $"{t.Schema.Id}:{t.State?.RunningJobId}:{t.State?.Watermark}:{t.State?.WatermarkField}:{t.State?.Table?.Name}:{t.Schema.Settings.CdcTableMode}"));

    /// <summary>One session: snapshots first, then streaming until the tables change (one enabled, disabled, resynced,
    /// truncated upstream). False when there is nothing to consume (CDC off, or no CDC table).</summary>
    private async Task<bool> SessionAsync(CancellationToken ct)
    {
        if (await PlanAsync(ct) is not { } plan || plan.Tables.Count == 0) return false;
        if (_registry.Get(plan.Source.SourceType) is not IChangeStreamReader streams) return false;

        var warehouseSchema = WarehouseTables.SchemaFor(projectId);
        await using var connection = _runs.Warehouse(_store);
        await connection.OpenAsync(ct);
        await WarehouseTables.EnsureSchemaAsync(connection, warehouseSchema, _runs.SeparateWarehouse, ct);
        await WarehouseChanges.EnsurePositionsAsync(connection, warehouseSchema, ct);

        // A table whose snapshot just failed waits a while before the next try; the others stream meanwhile.
        var retryAfter = _clock.GetUtcNow() - SnapshotRetryCooldown;
        var unsnapshotted = plan.Tables.Where(t => t.SnapshotPoint is null && !(t.State is { LastStatus: JobStatuses.Failed } failed && failed.LastRunAt > retryAfter)).ToList();
        if (unsnapshotted.Count > 0)
        {
            await SnapshotAsync(plan, unsnapshotted, streams, ct);
            if (await PlanAsync(ct) is not { } replanned) return true;
            plan = replanned;
        }

        if (plan.Tables.All(t => t.SnapshotPoint is null)) return false;

        var position = await WarehouseChanges.PositionAsync(connection, warehouseSchema, sourceId, ct);
        await using var stream = await streams.StartStreamAsync(plan.Config, plan.Cdc.SlotName, plan.Cdc.PublicationName, position, ct);
        await new StreamSession(this, plan, stream, connection, warehouseSchema, position).RunAsync(ct);
        return true;
    }

    /// <summary>Loads the tables in one exported snapshot, each as a job; a snapshot a dead consumer left running is ended first.</summary>
    private async Task SnapshotAsync(Plan plan, IReadOnlyList<CdcTable> tables, IChangeStreamReader streams, CancellationToken ct)
    {
        await using var snapshot = await streams.ExportSnapshotAsync(plan.Config, ct);
        logger.LogInformation("CDC consumer of source {Source}: snapshot of {Tables} at {Point}", sourceId, tables.Count, Lsn.Format(snapshot.ConsistentPoint));
        var runLogger = services.GetRequiredService<ILogger<RunSyncJob>>();
        foreach (var table in tables)
        {
            if (await StartSnapshotAsync(plan.Source, table, ct) is not { } run) continue;
            DisableFailingSchema? disable;
            try
            {
                disable = await RunSyncJobHandler.RunCdcSnapshotAsync(run, snapshot, _store, _registry, _cipher, _clock, _runs, runLogger, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // The consumer is stopping (its node shuts down, or it moves): the snapshot ends as a job, not left running.
                await CancelSnapshotAsync(run, CancellationToken.None);
                throw;
            }

            if (disable is not null)
            {
                await using var scope = services.CreateAsyncScope();
                await scope.ServiceProvider.GetRequiredService<Wolverine.IMessageBus>().SendAsync(disable, new Wolverine.DeliveryOptions { TenantId = projectId });
            }
        }
    }

    private async Task<RunSyncJob?> StartSnapshotAsync(Source source, CdcTable table, CancellationToken ct)
    {
        await using var session = _store.LightweightSession(projectId);
        CallerMetadata.Stamp(session, Recorder);
        var now = _clock.GetUtcNow();
        var sync = await session.Events.FetchForWriting<SchemaSync>(table.Schema.Id, ct);
        if (sync.Aggregate?.RunningJobId is { } interrupted)
        {
            // A snapshot (or an older run) a consumer on a dead node left holding the table: it ends here, and is taken again.
            const string reason = "Interrupted: the CDC consumer that ran it stopped; the snapshot is taken again.";
            session.Events.Append(interrupted, new SyncJobCancelled(interrupted, reason, Recorder.Actor, Recorder.Channel, now));
            sync.AppendOne(new SyncRunCancelled(table.Schema.Id, interrupted, reason, Recorder.Actor, Recorder.Channel, now));
            await session.SaveChangesAsync(ct);
            return null;
        }

        if (SyncRuns.StartCdcSnapshot(source, table.Schema, sync.Aggregate, Recorder, Guid.CreateVersion7(now), now) is not { } start) return null;
        sync.AppendOne(start.RunStarted);
        session.Events.StartStream<SyncJob>(start.JobStarted.JobId, start.JobStarted);
        await session.SaveChangesAsync(ct);
        return start.Run;
    }

    private async Task CancelSnapshotAsync(RunSyncJob run, CancellationToken ct)
    {
        const string reason = "Stopped: the CDC consumer stopped on this node; the snapshot is taken again where it runs next.";
        await using var session = _store.LightweightSession(projectId);
        CallerMetadata.Stamp(session, Recorder);
        var now = _clock.GetUtcNow();
        var sync = await session.Events.FetchForWriting<SchemaSync>(run.SchemaId, ct);
        if (sync.Aggregate?.RunningJobId != run.JobId) return;
        session.Events.Append(run.JobId, new SyncJobCancelled(run.JobId, reason, Recorder.Actor, Recorder.Channel, now));
        sync.AppendOne(new SyncRunCancelled(run.SchemaId, run.JobId, reason, Recorder.Actor, Recorder.Channel, now));
        await session.SaveChangesAsync(ct);
    }

    /// <summary>A table's snapshot is void (TRUNCATE upstream): its state is reset, so the next session loads it again.</summary>
    private async Task ResetAsync(IEnumerable<CdcTable> tables, string reason, CancellationToken ct)
    {
        await using var session = _store.LightweightSession(projectId);
        CallerMetadata.Stamp(session, Recorder);
        var now = _clock.GetUtcNow();
        foreach (var table in tables)
            session.Events.Append(table.Schema.Id, new SyncStateReset(table.Schema.Id, false, reason, Recorder.Actor, Recorder.Channel, now));
        await session.SaveChangesAsync(ct);
    }

    private async Task RecordProgressAsync(CdcChangesApplied applied, CancellationToken ct)
    {
        await using var session = _store.LightweightSession(projectId);
        CallerMetadata.Stamp(session, Recorder);
        session.Events.Append(CdcStreams.For(sourceId), applied);
        await session.SaveChangesAsync(ct);
    }

    private async Task RecordFailureAsync(SourceReadException e, CancellationToken ct)
    {
        // Turned off meanwhile (disable_cdc drops the slot under the consumer): nothing failed.
        if (_lastFailure == e.ErrorClass || await PlanAsync(ct) is null) return;
        _lastFailure = e.ErrorClass;
        await using var session = _store.LightweightSession(projectId);
        CallerMetadata.Stamp(session, Recorder);
        session.Events.Append(CdcStreams.For(sourceId), new CdcStreamFailed(sourceId, e.Message, e.ErrorClass, _clock.GetUtcNow(), Recorder.Actor, Recorder.Channel));
        await session.SaveChangesAsync(ct);
    }

    /// <summary>
    /// Streaming, until the tables change. A reader task moves the stream's messages into a bounded channel (memory bounded
    /// by it); this loop folds them into chunks, applies a chunk inside the open warehouse transaction when it fills, and
    /// commits at a transaction's end once the batch is big or old enough, with the position, then acknowledges.
    /// </summary>
    private sealed class StreamSession(CdcConsumer consumer, Plan plan, IChangeStream stream, NpgsqlConnection connection, string warehouseSchema, ulong appliedAtStart)
    {
        private readonly ulong _applied = appliedAtStart;
        // Tables with no snapshot yet are left out: their changes are in the snapshot they will get.
        private readonly Dictionary<string, CdcTable> _tables = plan.Tables.Where(t => t.SnapshotPoint is not null).ToDictionary(t => t.Qualified, StringComparer.Ordinal);
        private readonly Dictionary<string, Dictionary<string, string>> _types = new(StringComparer.Ordinal);
        private readonly Dictionary<string, TableChanges> _chunk = new(StringComparer.Ordinal);
        private readonly Dictionary<string, List<WarehouseChanges.HistoryVersion>> _versions = new(StringComparer.Ordinal);
        private DateTimeOffset _commitAt;
        private readonly Dictionary<string, long> _byTable = new(StringComparer.Ordinal);
        private readonly List<CdcTable> _truncated = [];
        // The reader hands messages over in batches: one hand-over per message made the channel's lock the busiest thing in the
        // process. At most four chunks' worth wait in it (memory bounded by the chunk, never the table).
        private const int HandOver = 256;
        private readonly Channel<List<ChangeMessage>> _channel = ChangeChannel.CreateBounded<List<ChangeMessage>>(
            new BoundedChannelOptions(Math.Max(2, consumer._settings.ChunkSize * 4 / HandOver)) { SingleReader = true, SingleWriter = true });
        private List<ChangeMessage>? _handed;
        private int _next;
        private NpgsqlTransaction? _transaction;
        private ulong _acknowledged = appliedAtStart;
        private ulong _commitLsn;
        private bool _skipping;
        private bool _inTransaction;
        private int _pendingChanges;
        private DateTimeOffset? _batchSince;
        private long _changes, _transactions;
        private DateTimeOffset _progressSince;
        private ulong _progressReported = appliedAtStart;
        private long _received, _processed;
        private DateTimeOffset _idleAcknowledgedAt;

        public async Task RunAsync(CancellationToken ct)
        {
            var settings = consumer._settings;
            foreach (var table in _tables.Values.Where(t => t.HasHistory))
            {
                var name = table.State!.Table!.Name;
                var types = _types[name] = await WarehouseChanges.ColumnTypesAsync(connection, null, warehouseSchema, name, ct);
                await WarehouseChanges.EnsureHistoryAsync(connection, warehouseSchema, name, await WarehouseChanges.KeyAsync(connection, warehouseSchema, name, ct),
                    types, table.State.Watermark!, ct);
            }

            _progressSince = consumer._clock.GetUtcNow();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var reading = PumpAsync(stop.Token);
            var checkedAt = consumer._clock.GetUtcNow();
            try
            {
                while (true)
                {
                    // Messages waiting are taken at once; only an empty channel is waited on, for at most the flush interval.
                    if (!TryTake(out var change))
                    {
                        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
                        wait.CancelAfter(settings.FlushInterval);
                        try
                        {
                            if (await _channel.Reader.WaitToReadAsync(wait.Token)) TryTake(out change);
                            else break;
                        }
                        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                        {
                            // Nothing within the flush interval.
                        }
                    }

                    if (change is not null)
                    {
                        Interlocked.Increment(ref _processed);
                        if (await HandleAsync(change, ct)) return;
                        continue;
                    }

                    var now = consumer._clock.GetUtcNow();
                    if (!_inTransaction && _transaction is not null && await CommitAsync(ct)) return;
                    if (_inTransaction || _transaction is not null) continue;
                    // Quiet: no transaction open, nothing applied but uncommitted. The server's position (keepalives move it
                    // while other databases write) may then be acknowledged, so a slot whose tables are quiet moves on too.
                    // It is read before the checks: any commit it could cover was preceded by its BEGIN, which is then
                    // still in the channel or being applied, and the checks below fail (ADR 0047).
                    var server = stream.ServerPosition;
                    if (server > _acknowledged && now - _idleAcknowledgedAt >= settings.IdleAcknowledgeAfter
                        && _channel.Reader.Count == 0 && Interlocked.Read(ref _received) == Interlocked.Read(ref _processed))
                    {
                        await stream.AcknowledgeAsync(server, ct);
                        (_acknowledged, _idleAcknowledgedAt) = (server, now);
                    }

                    if (now - checkedAt >= settings.CheckTablesEvery)
                    {
                        checkedAt = now;
                        if (await consumer.ChangedSinceLastPlanAsync(ct)
                            && (await consumer.PlanAsync(ct) is not { } current || current.Signature != plan.Signature)) return;
                    }
                }

                await reading;
            }
            finally
            {
                await stop.CancelAsync();
                try
                {
                    await reading;
                }
                catch (Exception e) when (e is OperationCanceledException or SourceReadException or NpgsqlException or IOException or InvalidOperationException)
                {
                    // The session ends; a reading error that ended it already went up from the channel.
                }

                try
                {
                    await AppliedAsync();
                }
                catch (Exception e) when (e is OperationCanceledException or NpgsqlException or IOException or InvalidOperationException)
                {
                    // The session ends; a failed apply already went up from where it was awaited.
                }

                if (_transaction is not null) await _transaction.DisposeAsync();
            }
        }

        private bool TryTake(out ChangeMessage? change)
        {
            if (_handed is null || _next == _handed.Count)
            {
                (_handed, _next) = (null, 0);
                if (!_channel.Reader.TryRead(out _handed))
                {
                    change = null;
                    return false;
                }
            }

            change = _handed[_next++];
            return true;
        }

        private async Task PumpAsync(CancellationToken ct)
        {
            try
            {
                await using var messages = stream.ReadAsync(ct).GetAsyncEnumerator(ct);
                var batch = new List<ChangeMessage>(HandOver);
                while (true)
                {
                    var next = messages.MoveNextAsync();
                    // Nothing more at hand: what was read goes to the loop now, not when the batch fills.
                    if (!next.IsCompleted && batch.Count > 0)
                        batch = await HandOverAsync(batch, ct);
                    if (!await next) break;
                    // Counted when read, not when handed over: the idle acknowledgement must see a message the pump still holds.
                    Interlocked.Increment(ref _received);
                    batch.Add(messages.Current);
                    if (batch.Count == HandOver) batch = await HandOverAsync(batch, ct);
                }

                if (batch.Count > 0) await HandOverAsync(batch, ct);
                _channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                _channel.Writer.TryComplete(e);
                throw;
            }
        }

        /// <summary>Hands a batch to the loop; answers a new one to fill.</summary>
        private async Task<List<ChangeMessage>> HandOverAsync(List<ChangeMessage> batch, CancellationToken ct)
        {
            await _channel.Writer.WriteAsync(batch, ct);
            return new List<ChangeMessage>(HandOver);
        }

        /// <summary>True when the session must end (tables to snapshot again).</summary>
        private async Task<bool> HandleAsync(ChangeMessage change, CancellationToken ct)
        {
            switch (change)
            {
                case ChangeBegin begin:
                    _inTransaction = true;
                    (_commitLsn, _commitAt) = (begin.CommitLsn, begin.CommittedAt);
                    // Committed already: the warehouse has this transaction (a restart resumes from the slot's confirmed point).
                    _skipping = begin.CommitLsn < _applied;
                    return false;
                case RowChange row when !_skipping && _tables.TryGetValue(row.Table, out var table) && _commitLsn >= table.SnapshotPoint:
                    await AddAsync(table, row, ct);
                    return false;
                case TableDescribed described when _tables.TryGetValue(described.Table, out var table):
                    await EnsureColumnsAsync(table, described.Columns, ct);
                    return false;
                case TablesTruncated truncated when !_skipping:
                    _truncated.AddRange(truncated.Tables.Where(_tables.ContainsKey).Select(t => _tables[t]).Where(t => _commitLsn >= t.SnapshotPoint));
                    return false;
                case ChangeCommit commit:
                    _inTransaction = false;
                    if (_skipping) return false;
                    _transactions++;
                    _lastEnd = commit.EndLsn;
                    _batchSince ??= consumer._clock.GetUtcNow();
                    if (_truncated.Count > 0 || _pendingChanges >= consumer._settings.MaxChangesPerCommit
                        || consumer._clock.GetUtcNow() - _batchSince >= consumer._settings.FlushInterval)
                        return await CommitAsync(ct);
                    return false;
                default:
                    return false;
            }
        }

        private ulong _lastEnd;

        private async Task AddAsync(CdcTable table, RowChange row, CancellationToken ct)
        {
            _transaction ??= await WarehouseChanges.BeginAsync(connection, ct);
            if (_chunk.TryGetValue(table.Qualified, out var changes) && !changes.Fits(row))
            {
                await FlushAsync(changes, ct);
                _chunk.Remove(table.Qualified);
                changes = null;
            }

            if (changes is null) _chunk[table.Qualified] = changes = new TableChanges(table.Qualified, row.Columns, row.KeyColumns);
            if (!table.HasHistory) changes.Add(row, _commitAt);
            else
            {
                var made = changes.AddVersions(row, _commitAt);
                if (!_versions.TryGetValue(table.Qualified, out var versions)) _versions[table.Qualified] = versions = [];
                var lsn = Lsn.Format(_commitLsn);
                for (var i = 0; i < made.Count; i++)
                {
                    var op = made[i].Deleted ? "delete" : row.Kind == ChangeKind.Insert ? "insert" : "update";
                    versions.Add(new WarehouseChanges.HistoryVersion(op, lsn, _commitAt, made[i], changes.KeyOf(made[i])));
                }
            }
            _pendingChanges++;
            _changes++;
            _byTable[table.Schema.Name] = _byTable.GetValueOrDefault(table.Schema.Name) + 1;
            if (changes.Count >= consumer._settings.ChunkSize)
            {
                await FlushAsync(changes, ct);
                _chunk.Remove(table.Qualified);
            }
        }

        /// <summary>The chunk being applied while the loop folds the next one: the warehouse works on one while this process
        /// decodes and folds the other. The connection takes one statement at a time, so anything else on it waits for this first.</summary>
        private Task _applying = Task.CompletedTask;

#pragma warning disable VSTHRD003 // The task is this session's own apply, started by this loop; an agent's loop has no synchronization context to deadlock on.
        private Task AppliedAsync() => _applying;
#pragma warning restore VSTHRD003

        /// <summary>Starts applying a full chunk (once the one before it is applied); it is no longer the loop's to fold into.</summary>
        private async Task FlushAsync(TableChanges changes, CancellationToken ct)
        {
            await AppliedAsync();
            _versions.Remove(changes.Table, out var versions);
            _applying = ApplyChunkAsync(changes, versions, ct);
        }

        private async Task ApplyChunkAsync(TableChanges changes, List<WarehouseChanges.HistoryVersion>? versions, CancellationToken ct)
        {
            var table = _tables[changes.Table];
            var name = table.State!.Table!.Name;
            if (!_types.TryGetValue(name, out var types))
                _types[name] = types = await WarehouseChanges.ColumnTypesAsync(connection, _transaction, warehouseSchema, name, ct);
            if (versions is not null)
                await WarehouseChanges.AppendHistoryAsync(connection, _transaction!, warehouseSchema, name, changes, versions, types, ct);
            await WarehouseChanges.ApplyAsync(connection, _transaction!, warehouseSchema, name, changes, types, ct);
        }

        /// <summary>A column added upstream (a new relation message) is added to the warehouse table, typed as a load would type it.</summary>
        private async Task EnsureColumnsAsync(CdcTable table, IReadOnlyList<string> columns, CancellationToken ct)
        {
            await AppliedAsync();
            var name = table.State!.Table!.Name;
            if (!_types.TryGetValue(name, out var types))
                _types[name] = types = await WarehouseChanges.ColumnTypesAsync(connection, _transaction, warehouseSchema, name, ct);
            var missing = columns.Where(c => !types.ContainsKey(c)).ToList();
            if (missing.Count == 0) return;
            if (consumer._registry.Get(plan.Source.SourceType) is not ITableReader reader) return;
            await using var read = await reader.OpenAsync(new TableReadRequest(plan.Config, table.Schema.Name, null, []), ct);
            var added = missing.Select(c => read.Shape.Column(c)).Where(c => c is not null).Select(c => (c!.Name, c.Type)).ToList();
            if (_chunk.Remove(table.Qualified, out var pending)) await FlushAsync(pending, ct);
            await AppliedAsync();
            _transaction ??= await WarehouseChanges.BeginAsync(connection, ct);
            await WarehouseChanges.AddColumnsAsync(connection, _transaction, warehouseSchema, name, added, ct);
            if (table.HasHistory) await WarehouseChanges.AddColumnsAsync(connection, _transaction, warehouseSchema, WarehouseChanges.HistoryName(name), added, ct);
            foreach (var (column, type) in added) types[column] = type;
            consumer.Logger.LogInformation("CDC consumer of source {Source}: columns {Columns} added upstream to {Table}", plan.Source.Id, string.Join(", ", added.Select(a => a.Name)), name);
        }

        /// <summary>Applies what is left of the batch, commits it with its position, then tells the slot. True when the session
        /// must end (a table truncated upstream is loaded again).</summary>
        private async Task<bool> CommitAsync(CancellationToken ct)
        {
            if (_transaction is null && _lastEnd <= _acknowledged && _truncated.Count == 0) return false;
            _transaction ??= await WarehouseChanges.BeginAsync(connection, ct);
            foreach (var changes in _chunk.Values) await FlushAsync(changes, ct);
            _chunk.Clear();
            await AppliedAsync();
            if (_lastEnd > _applied) await WarehouseChanges.SetPositionAsync(connection, _transaction, warehouseSchema, plan.Source.Id, _lastEnd, ct);
            await _transaction.CommitAsync(ct);
            await _transaction.DisposeAsync();
            _transaction = null;
            (_pendingChanges, _batchSince) = (0, null);
            if (_lastEnd > _acknowledged)
            {
                await stream.AcknowledgeAsync(_lastEnd, ct);
                _acknowledged = _lastEnd;
            }

            var now = consumer._clock.GetUtcNow();
            if (_acknowledged > _progressReported && now - _progressSince >= consumer._settings.ProgressEventInterval) await ReportAsync(now, ct);
            if (_truncated.Count == 0) return false;
            await ReportAsync(now, ct);
            await consumer.ResetAsync(_truncated.Distinct(), "The table was truncated upstream; it is loaded again from a new snapshot.", ct);
            return true;
        }

        private async Task ReportAsync(DateTimeOffset now, CancellationToken ct)
        {
            if (_acknowledged <= _progressReported) return;
            var recorder = consumer.Recorder;
            await consumer.RecordProgressAsync(new CdcChangesApplied(plan.Source.Id, Lsn.Format(_acknowledged), _changes, _transactions,
                new Dictionary<string, long>(_byTable), _progressSince, now, recorder.Actor, recorder.Channel), ct);
            (_progressReported, _progressSince, _changes, _transactions) = (_acknowledged, now, 0, 0);
            _byTable.Clear();
        }
    }
}
