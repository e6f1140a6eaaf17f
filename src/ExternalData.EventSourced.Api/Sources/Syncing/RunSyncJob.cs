using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Messaging;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Sync;
using Marten;
using Npgsql;
using Wolverine;
using Wolverine.ErrorHandling;
using Wolverine.Runtime.Handlers;

namespace ExternalData.EventSourced.Sources;

/// <summary>How runs read (<c>Sync:PageSize</c>, rows per batch: the bound on what one transaction carries), and where tests
/// reach into a run after each committed batch (to kill it mid-way; unset in production).</summary>
public sealed class SyncRunSettings
{
    public int PageSize { get; set; } = 50_000;

    /// <summary><c>ConnectionStrings:Warehouse</c>: a database of its own for the warehouse; null, the service's own (ADR 0044).</summary>
    public string? WarehouseConnectionString { get; set; }

    public bool SeparateWarehouse => !string.IsNullOrEmpty(WarehouseConnectionString);

    /// <summary>A connection to the warehouse, not yet open.</summary>
    public NpgsqlConnection Warehouse(IDocumentStore store) =>
        SeparateWarehouse ? new NpgsqlConnection(WarehouseConnectionString) : store.Storage.Database.CreateConnection();

    /// <summary>How long a run waits before each new try after a transient failure of the source (a lost connection, a
    /// restart, too many connections, a timeout); once they are used up the job fails with a neutral text and the schedule
    /// goes on (SYNC.md §5). <c>Sync:TransientRetryDelays</c>, comma-separated time spans.</summary>
    public IReadOnlyList<TimeSpan> TransientRetryDelays { get; set; } = [TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(2)];

    /// <summary>How long a drained webhook delivery is kept before a run trims it (<c>Sync:WebhookRetention</c>).</summary>
    public TimeSpan WebhookRetention { get; set; } = TimeSpan.FromDays(7);

    public Func<RunSyncJob, int, Task>? AfterBatchCommitted { get; set; }

    /// <summary>With a separate warehouse, after a page's rows (and mark) committed there and before its events: where a
    /// crash leaves the warehouse ahead of the event store (tests only).</summary>
    public Func<RunSyncJob, Task>? BetweenRowsAndEvents { get; set; }
}

/// <summary>
/// A run's whole life after its start (SYNC.md §3). A full load reads the table in keyset pages into a staging table and
/// swaps it in at the end; an incremental, append or xmin run reads only what changed, in pages, and merges (or appends)
/// each page into the table. Every page commits in one transaction with the events that record it, its watermark
/// included, because the warehouse is the service's own database (ADR 0041): a crash re-reads at most the page in flight.
/// A failure leaves the warehouse as the last committed page left it and says why in words a data engineer can act on.
/// </summary>
public static partial class RunSyncJobHandler
{
    // A full load of a large table takes as long as it takes; Wolverine's default execution timeout is for messages.
    // A run that could not even record its end (the service's own database down) is delivered again, spread out so the
    // database can come back: the job is still running then, so it runs again. Never dead-lettered at the first failure,
    // which would leave the job running and its schema held for good.
    public static void Configure(HandlerChain chain)
    {
        chain.ExecutionTimeoutInSeconds = (int)TimeSpan.FromHours(12).TotalSeconds;
        chain.OnException<Exception>(e => e is not OperationCanceledException)
            .RetryWithCooldown(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(60),
                TimeSpan.FromMinutes(2), TimeSpan.FromMinutes(5));
    }

    /// <summary>Runs the job, then has the scheduler arm the schema's next run (also when the job had ended already: a
    /// delivery after a crash re-arms what the crash may have lost). A failure nothing but a person can fix also disables
    /// the schema, through the schema-update use case with the run loop as its caller.</summary>
    public static async Task<OutgoingMessages> Handle(
        RunSyncJob run, IDocumentStore store, SourceTypeRegistry registry, SecretsCipher cipher, TimeProvider clock, SyncRunSettings settings,
        ILogger<RunSyncJob> logger, CancellationToken ct)
    {
        var failure = await RunAsync(run, store, registry, cipher, clock, settings, logger, ct);
        var messages = new OutgoingMessages { new ArmSyncSchedules(run.ProjectId, run.SourceId, [run.SchemaId]).ForProject() };
        if (failure is { Retryable: false, DisablesSchema: true })
            messages.Add(new DisableFailingSchema(run.ProjectId, run.SourceId, run.SchemaId, run.JobId, failure.ErrorClass)
                .WithDeliveryOptions(new DeliveryOptions { TenantId = run.ProjectId }));
        return messages;
    }

    /// <summary>How a run ended badly: its class, whether a later run may well succeed, and whether the schema must stop
    /// until someone acts (not when the schema or source is simply gone).</summary>
    private sealed record RunFailure(string ErrorClass, bool Retryable, bool DisablesSchema = true);

    /// <summary>A CDC table's first load (or its reload after a resync or an upstream TRUNCATE), run by the source's CDC
    /// consumer in the snapshot it exported: the whole table lands as of <paramref name="snapshot"/>, and the schema's
    /// watermark becomes the snapshot's stream position, from which the consumer applies that table's changes (ADR 0047).
    /// Answers the message that disables the schema when the failure is one only a person can fix, as a run's would.</summary>
    public static async Task<DisableFailingSchema?> RunCdcSnapshotAsync(
        RunSyncJob run, SourceTypes.ChangeDataCapture.ISourceSnapshot snapshot, IDocumentStore store, SourceTypeRegistry registry, SecretsCipher cipher,
        TimeProvider clock, SyncRunSettings settings, ILogger<RunSyncJob> logger, CancellationToken ct) =>
        await RunAsync(run, store, registry, cipher, clock, settings, logger, ct, snapshot) is { Retryable: false, DisablesSchema: true } failure
            ? new DisableFailingSchema(run.ProjectId, run.SourceId, run.SchemaId, run.JobId, failure.ErrorClass)
            : null;

    /// <summary>The watermark field of a CDC table: the stream position its last snapshot stands for.</summary>
    public const string CdcPositionField = "_ph_lsn";

    private static async Task<RunFailure?> RunAsync(
        RunSyncJob run, IDocumentStore store, SourceTypeRegistry registry, SecretsCipher cipher, TimeProvider clock, SyncRunSettings settings,
        ILogger<RunSyncJob> logger, CancellationToken ct, SourceTypes.ChangeDataCapture.ISourceSnapshot? snapshot = null)
    {
        SyncJob job;
        Source? source;
        SourceSchema? schema;
        SchemaSync? state;
        JsonObject config;
        await using (var query = store.QuerySession(run.ProjectId))
        {
            // Delivered again after a crash, or after the job ended: only a job still running is run.
            if (await query.LoadAsync<SyncJob>(run.JobId, ct) is not { Status: JobStatuses.Running } running) return null;
            job = running;
            source = await query.LoadAsync<Source>(run.SourceId, ct);
            schema = await query.LoadAsync<SourceSchema>(run.SchemaId, ct);
            state = await query.LoadAsync<SchemaSync>(run.SchemaId, ct);
            if (source is null || schema is null || state?.RunningJobId != run.JobId)
                return await FailAsync(store, run, new RunFailure("source_deleted", false, DisablesSchema: false), "The source or the table was deleted before the run could start.", clock, ct);

            config = await StoredConfig.LoadAsync(source, query, cipher, ct);
        }

        var sourceType = registry.Get(source.SourceType);
        if (!SyncRuns.CanRead(sourceType))
            return await FailAsync(store, run, new RunFailure("not_supported", false, DisablesSchema: false), $"Syncing {source.SourceType} tables is not available yet.", clock, ct);

        var target = new Target(WarehouseTables.SchemaFor(run.ProjectId),
            // The name is fixed when the table is first created and never recomputed (SYNC.md §1).
            state.Table?.Name ?? WarehouseTables.NameFor(source.Prefix, source.SourceType, schema.Name));
        await using var connection = settings.Warehouse(store);
        await connection.OpenAsync(ct);
        var chosen = schema.Settings;
        // A CDC table is loaded whole, every column and row: its changes stream in unfiltered.
        var request = snapshot is null
            ? new TableReadRequest(config, schema.Name, chosen.EnabledColumns, RowFiltersOf(chosen))
            : new TableReadRequest(config, schema.Name, null, [], snapshot.Name);
        await using var context = new RunContext(run, job, schema, state, store, connection, target, clock, settings, logger,
            sourceType is ITableReader reader ? c => reader.OpenAsync(request, c) : _ => throw new InvalidOperationException($"{source.SourceType} is not read as tables."))
        {
            CdcPoint = snapshot is null ? null : SourceTypes.ChangeDataCapture.Lsn.Format(snapshot.ConsistentPoint),
        };
        try
        {
            await WarehouseTables.EnsureSchemaAsync(connection, target.Schema, settings.SeparateWarehouse, ct);
            if (sourceType is IObjectSource objects)
            {
                await LoadObjectsAsync(context, objects.OpenObjects(config, schema.Name), objects, cipher, ct);
                logger.LogInformation("Synced {Schema} of source {Source} into {Warehouse}.{Table} (job {Job})", schema.Name, source.Id, target.Schema, target.Name, run.JobId);
                return null;
            }

            var shape = await context.FromSourceAsync(read => Task.FromResult(read.Shape), ct);
            if (chosen.SyncType is SyncTypes.Incremental or SyncTypes.Append && chosen.IncrementalField is { } cursorField && shape.Column(cursorField) is null)
                throw new SourceReadException(
                    $"The incremental field '{cursorField}' of '{schema.Name}' is gone upstream (or not among enabled_columns). Pick another incremental field, or sync the table as a full refresh, then enable the schema again.",
                    false, "cursor_missing");
            var key = chosen.SyncType is SyncTypes.Incremental or SyncTypes.Xmin ? MergeKey(chosen, shape, schema.Name)
                : snapshot is not null ? CdcKey(shape, schema.Name) : null;
            // A table's own primary key is unique by its constraint; a key the user chose is probed before anything merges on it.
            if (key is not null && !key.ToHashSet().SetEquals(shape.PrimaryKey)
                && await context.FromSourceAsync(read => read.DuplicateKeysAsync(key, ct), ct) is > 0 and var duplicated)
                throw DuplicateKeysException.For(key, duplicated);
            var delta = job.Mode is not (SyncModes.Full or SyncModes.CdcSnapshot);
            if (delta)
            {
                var (present, drift) = await WarehouseTables.PrepareTargetAsync(connection, target.Schema, target.Name, run.SchemaId, shape, key, ct);
                if (!present) (delta, context.Note) = (false, "The warehouse table was gone, so this run loaded the whole table.");
                else if (drift is { None: false }) context.Note = DriftNote(drift);
            }
            if (delta && chosen.SyncType == SyncTypes.Xmin && await context.FromSourceAsync(read => read.SnapshotCeilingAsync(ct), ct) - state.XminCeiling >= XidWraparound)
                (delta, context.Note) = (false, "Over 2^31 transactions ran upstream since the last run, past what xmin can compare, so this run loaded the whole table.");
            if (delta) await LoadChangesAsync(context, key, ct);
            else await LoadAllAsync(context, key, ct);
            logger.LogInformation("Synced {Schema} of source {Source} into {Warehouse}.{Table} (job {Job})", schema.Name, source.Id, target.Schema, target.Name, run.JobId);
            return null;
        }
        catch (RunStopped stopped)
        {
            if (stopped.Reason is { } reason) await CancelAsync(store, run, reason, clock, CancellationToken.None);
            return null;
        }
        catch (SourceReadException e) when (e.Retryable)
        {
            // Tried again and again within the run; the next scheduled run tries anew.
            return await FailAsync(store, run, new RunFailure(e.ErrorClass, true),
                $"{e.Message} The run tried {settings.TransientRetryDelays.Count + 1} times and stopped; the next scheduled run tries again.", clock, CancellationToken.None);
        }
        catch (SourceReadException e)
        {
            return await FailAsync(store, run, new RunFailure(e.ErrorClass, false), e.Message, clock, CancellationToken.None);
        }
        catch (WarehouseConflictException e)
        {
            return await FailAsync(store, run, new RunFailure("warehouse_conflict", false), e.Message, clock, CancellationToken.None);
        }
        catch (DuplicateKeysException e)
        {
            return await FailAsync(store, run, new RunFailure("duplicate_primary_keys", false), e.Message, clock, CancellationToken.None);
        }
        catch (IncompatibleColumnChangeException e)
        {
            return await FailAsync(store, run, new RunFailure("incompatible_type_change", false), e.Message, clock, CancellationToken.None);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not the source's fault, and its text may name our internals: logged here, a neutral sentence for the user, and
            // never a reason to disable the schema. If the service's database is down, the fail below throws too, and the
            // message is delivered again once it is back: the job is still running then, so it runs again.
            logger.LogError(e, "Sync job {Job} of schema {Schema} failed on the service's side", run.JobId, run.SchemaId);
            return await FailAsync(store, run, new RunFailure("internal", true),
                "The run failed on the service's side, not the source's; the next run tries again.", clock, CancellationToken.None);
        }
        finally
        {
            // A node shutting down mid-run leaves its work tables for the job's next delivery, which may go on from them.
            if (!ct.IsCancellationRequested)
                foreach (var leftover in context.Leftovers) await DropQuietlyAsync(connection, settings.Warehouse(store), leftover, logger);
        }
    }

    private static string DriftNote(ColumnDriftPlan drift) => string.Join(" ", new[]
    {
        drift.Added.Count > 0 ? $"New upstream columns added: {string.Join(", ", drift.Added.Select(c => $"{c.Name} ({c.Type})"))}." : null,
        drift.Widened.Count > 0 ? $"Widened: {string.Join(", ", drift.Widened.Select(w => $"{w.Column} {w.From} → {w.To}"))}." : null,
    }.Where(n => n is not null));

    private sealed record Target(string Schema, string Name);

    /// <summary>Half the 32-bit xid space: an xmin further back than this cannot be told apart from one in the future.</summary>
    private const long XidWraparound = 1L << 31;

    private sealed record RunContext(
        RunSyncJob Run, SyncJob Job, SourceSchema Schema, SchemaSync State, IDocumentStore Store, NpgsqlConnection Connection, Target Target,
        TimeProvider Clock, SyncRunSettings Settings, ILogger Logger, Func<CancellationToken, Task<ITableRead>> Open) : IAsyncDisposable
    {
        private ITableRead? _read;

        /// <summary>Tables the run made for itself and drops at its end, whatever the end.</summary>
        public List<string> Leftovers { get; } = [];
        /// <summary>Why the run loads everything although it planned to read only the changes.</summary>
        public string? Note { get; set; }
        public string? Field => CdcPoint is not null ? CdcPositionField
            : Schema.Settings.SyncType == SyncTypes.Webhook ? SyncRuns.WebhookCutoffField
            : Schema.Settings.IncrementalField;
        /// <summary>A CDC snapshot's stream position: the load's watermark.</summary>
        public string? CdcPoint { get; init; }
        /// <summary>How many reads (connections, snapshots) of the source the run has opened: more than one after a reconnect.</summary>
        public int Reads { get; private set; }

        /// <summary>
        /// One unit of reading the source (a page with its commit, or a probe): a transient failure of the source drops the
        /// connection, rolls the unit back (its transaction is disposed on the way out), waits and tries the unit again on a
        /// new connection, as often as <see cref="SyncRunSettings.TransientRetryDelays"/> says. Committed pages stay
        /// committed, so a retry re-reads at most the page in flight.
        /// </summary>
        public async Task<T> FromSourceAsync<T>(Func<ITableRead, Task<T>> unit, CancellationToken ct)
        {
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    if (_read is null)
                    {
                        _read = await Open(ct);
                        Reads++;
                    }

                    return await unit(_read);
                }
                catch (SourceReadException e) when (e.Retryable && attempt < Settings.TransientRetryDelays.Count)
                {
                    Logger.LogWarning("Sync job {Job}: {Error} ({Class}); trying again in {Delay}", Run.JobId, e.Message, e.ErrorClass, Settings.TransientRetryDelays[attempt]);
                    await DropReadAsync();
                    await Task.Delay(Settings.TransientRetryDelays[attempt], Clock, ct);
                }
            }
        }

        private async Task DropReadAsync()
        {
            if (_read is null) return;
            try
            {
                await _read.DisposeAsync();
            }
            catch (Exception e) when (e is NpgsqlException or IOException or InvalidOperationException)
            {
                // The connection is broken already; there is nothing left to close cleanly.
            }

            _read = null;
        }

        public ValueTask DisposeAsync() => new(DropReadAsync());
    }

    /// <summary>Everything, into a staging table swapped in at the end (SYNC.md §3.1; also the first run of the other types and
    /// a resync). A cursor-based schema's next start is taken before reading, so a row updated during the load is read again
    /// next time, never missed; an append schema's is the highest value loaded, so nothing loaded is appended again.</summary>
    private static async Task LoadAllAsync(RunContext context, IReadOnlyList<string>? key, CancellationToken ct)
    {
        var (run, connection, target) = (context.Run, context.Connection, context.Target);
        var syncType = context.Schema.Settings.SyncType;
        var ceiling = syncType == SyncTypes.Xmin ? await context.FromSourceAsync(read => read.SnapshotCeilingAsync(ct), ct) : (long?)null;
        var watermark = context.CdcPoint
            ?? (syncType == SyncTypes.Incremental && context.Field is { } field ? await context.FromSourceAsync(read => read.MaxAsync(field, ct), ct) : null);

        var shape = await context.FromSourceAsync(read => Task.FromResult(read.Shape), ct);
        var kept = await WarehouseTables.DroppedUpstreamAsync(connection, target.Schema, target.Name, run.SchemaId, shape, ct);
        // A delivery after a crash (or a node's shutdown) finds the staging table its earlier batches filled, and where they
        // ended: the load goes on from there if the source can tell what changed since (ADR 0051).
        var goOn = context.CdcPoint is null && context.Job.Position is not null
            ? await WarehouseTables.StagingToGoOnAsync(connection, target.Schema, run.JobId, shape, kept, ct)
            : null;
        var staging = goOn ?? await WarehouseTables.CreateStagingAsync(connection, target.Schema, run.SchemaId, run.JobId, shape, kept, ct);
        var stagingTable = WarehouseTables.Qualified(target.Schema, staging);
        context.Leftovers.Add(stagingTable);
        var (total, batch) = goOn is not null ? (context.Job.RowsSynced, context.Job.Batches) : (0L, 0);
        // Where the committed part of a block-paged load ends, in a form another read (snapshot) can go on from.
        var point = goOn is not null ? context.Job.Position : null;
        string? after = null;
        var reads = goOn is not null ? -1 : context.Reads;
        while (true)
        {
            var (done, page) = await context.FromSourceAsync(async read =>
            {
                if (context.Reads != reads)
                {
                    // A new read, in a snapshot other than the one the committed batches were read in.
                    reads = context.Reads;
                    if (point is not null) (after, total, point) = await GoOnAsync(context, read, staging, shape, point, batch, ct);
                    else if (!read.PagesOutliveTheRead(RowSelection.All)) (after, total) = (null, await StartOverAsync(context, shape, kept, ct));
                }

                KeysetPage? page = null;
                if (read.PageColumnFor(RowSelection.All) is not null && (page = await read.NextPageAsync(RowSelection.All, after, context.Settings.PageSize, ct)) is null)
                    return (true, null);

                await using var transaction = await connection.BeginTransactionAsync(ct);
                long rows = 0;
                await PipeAsync(await WarehouseTables.CopyIntoAsync(connection, target.Schema, staging, shape, ct), async into => rows = await read.CopyAsync(RowSelection.All, page, into, ct));
                var position = page is null ? null : read.ResumePointAfter(page) ?? page.LastKey;
                await CommitAsync(context, transaction, null, async session =>
                {
                    await HeldAsync(context, session, ct);
                    session.Events.Append(run.JobId, new SyncBatchLoaded(run.JobId, batch + 1, rows, total + rows, position, context.Clock.GetUtcNow(), run.Recorder.Actor, run.Recorder.Channel));
                }, ct);
                total += rows;
                batch++;
                point = page is null ? null : read.ResumePointAfter(page);
                return (false, page);
            }, ct);
            if (done) break;
            if (context.Settings.AfterBatchCommitted is { } hook) await hook(run, batch);

            if (page is null) break;
            after = page.LastKey;
        }

        await using var finish = await connection.BeginTransactionAsync(ct);
        if (context.CdcPoint is not null) await WarehouseTables.AddCdcColumnsAsync(connection, finish, target.Schema, staging, ct);
        // Staging holds exactly the rows its batches copied (and a resume kept), so they are the table's count.
        var table = await WarehouseTables.SwapInAsync(connection, finish, target.Schema, staging, target.Name, run.SchemaId, ct, total);
        if (key is not null) await WarehouseTables.EnsureKeyIndexAsync(connection, finish, target.Schema, target.Name, run.SchemaId, key, ct);
        if (syncType == SyncTypes.Append && context.Field is { } appendField)
            watermark = await WarehouseTables.MaxAsync(connection, finish, target.Schema, target.Name, appendField, ct);
        await CompleteAsync(context, finish, table, table.RowCount, batch, watermark, ceiling, ct);
        // Swapped in for good only now: a run stopped at its end rolls the swap back, and its staging table is dropped.
        context.Leftovers.Remove(stagingTable);
    }

    /// <summary>
    /// Goes on with a block-paged full load in a new read of the source (ADR 0051): of the rows the committed batches loaded,
    /// those no transaction has written since stay (the source sends their keys only); every other row of the staging table
    /// goes (deleted or changed upstream since, or loaded by a batch whose events never committed); the rows written since
    /// in the blocks already loaded are read again; the next page starts after the last committed block. One transaction,
    /// recorded as <see cref="SyncLoadResumed"/>. If the source cannot go on (its table rewritten, its key gone), the load
    /// starts over in a new staging table.
    /// </summary>
    private static async Task<(string? After, long Total, string? Point)> GoOnAsync(
        RunContext context, ITableRead read, string staging, TableShape shape, string point, int batch, CancellationToken ct)
    {
        var (run, connection, target) = (context.Run, context.Connection, context.Target);
        if (await read.ResumeAsync(point, ct) is not { } resume)
        {
            var kept = await WarehouseTables.DroppedUpstreamAsync(connection, target.Schema, target.Name, run.SchemaId, shape, ct);
            return (null, await StartOverAsync(context, shape, kept, ct), null);
        }

        await using var transaction = await connection.BeginTransactionAsync(ct);
        // Every row unchanged upstream is in staging, so when staging holds no more rows than those, none is to drop and no
        // key needs to cross the wire: two counts instead of a key per loaded row (the common case: a crash, nothing changed).
        var (unchanged, dropped) = await read.CountAsync(resume.Unchanged, ct) is var same && same == await WarehouseTables.CountAsync(connection, transaction, target.Schema, staging, ct)
            ? (same, 0L)
            : await WarehouseTables.KeepOnlyAsync(connection, transaction, target.Schema, staging, shape, into => read.CopyKeysAsync(resume.Unchanged, into, ct), ct);
        long again = 0;
        await PipeAsync(await WarehouseTables.CopyIntoAsync(connection, target.Schema, staging, shape, ct), async into => again = await read.CopyAsync(resume.Changed, null, into, ct));
        await CommitAsync(context, transaction, null, async session =>
        {
            await HeldAsync(context, session, ct);
            session.Events.Append(run.JobId, new SyncLoadResumed(run.JobId, batch, unchanged, dropped, again, unchanged + again, resume.Point, context.Clock.GetUtcNow(),
                run.Recorder.Actor, run.Recorder.Channel));
        }, ct);
        context.Logger.LogInformation("Sync job {Job} goes on after batch {Batch}: {Kept} rows kept, {Dropped} dropped, {Again} read again", run.JobId, batch, unchanged, dropped, again);
        return (resume.After, unchanged + again, resume.Point);
    }

    /// <summary>A load that cannot go on from its committed batches starts over in its staging table made anew (the columns
    /// read may have changed; the table keeps the job's name). Answers the rows loaded: none.</summary>
    private static async Task<long> StartOverAsync(RunContext context, TableShape shape, IReadOnlyList<WarehouseTableColumn> kept, CancellationToken ct)
    {
        await WarehouseTables.CreateStagingAsync(context.Connection, context.Target.Schema, context.Run.SchemaId, context.Run.JobId, shape, kept, ct);
        return 0;
    }

    /// <summary>Only what changed since the last run (SYNC.md §3.2–§3.4), page by page, each merged (or appended) into the
    /// table in one transaction with its watermark: a crash then the next run neither loses nor repeats a row.</summary>
    private static async Task LoadChangesAsync(RunContext context, IReadOnlyList<string>? key, CancellationToken ct)
    {
        var (run, connection, target, settings) = (context.Run, context.Connection, context.Target, context.Schema.Settings);
        var ceiling = settings.SyncType == SyncTypes.Xmin ? await context.FromSourceAsync(read => read.SnapshotCeilingAsync(ct), ct) : (long?)null;
        // A separate warehouse commits a page before its events: its own mark is then the freshest watermark (ADR 0044).
        var from = context.Settings.SeparateWarehouse
            ? await WarehouseTables.MarkAsync(connection, target.Schema, run.SchemaId, context.Field, ct) ?? context.State.Watermark
            : context.State.Watermark;
        RowSelection selection = settings.SyncType switch
        {
            SyncTypes.Incremental => new CursorRows(context.Field!, from!, Inclusive: true, settings.IncrementalFieldLookbackSeconds),
            SyncTypes.Append => new CursorRows(context.Field!, from!, Inclusive: false, null),
            _ => new ChangedRows(context.State.XminCeiling!.Value),
        };
        var cursor = selection as CursorRows;
        var shape = await context.FromSourceAsync(read => Task.FromResult(read.Shape), ct);
        var batchTable = await WarehouseTables.CreateBatchTableAsync(connection, run.JobId, shape, ct);
        context.Leftovers.Add("pg_temp." + WarehouseTables.Quote(batchTable));
        // A cursor run resumes from the watermark its committed pages advanced; an xmin run from its last committed key.
        var after = cursor is null ? context.Job.Position : null;
        var (batch, total) = (context.Job.Batches, context.Job.RowsSynced);
        string? watermark = cursor?.From;
        // The table's row count follows from its last exact count and the rows this run inserts — when this run is the only
        // writer since: the last run completed, this is the job's first delivery, and rows commit with their events.
        var tableRows = context.State is { LastStatus: JobStatuses.Completed, Table: { } last } && context.Job.Batches == 0 && !context.Settings.SeparateWarehouse
            ? last.RowCount : (long?)null;
        // The next page's bounds, probed on the source while the warehouse merges this page (the two are different
        // databases' work, so they overlap); taken by the next page only if it reads through the same connection.
        NextPage? probing = null;
        try
        {
            while (true)
            {
                var (done, page) = await context.FromSourceAsync(async read =>
                {
                    KeysetPage? page = null;
                    if (read.PageColumnFor(selection) is not null)
                    {
                        var probed = await TakeAsync(Interlocked.Exchange(ref probing, null), context.Reads);
                        if ((page = probed.Taken ? probed.Page : await read.NextPageAsync(selection, after, context.Settings.PageSize, ct)) is null)
                            return (true, null);
                    }

                    await using var transaction = await connection.BeginTransactionAsync(ct);
                    await PipeAsync(await WarehouseTables.CopyIntoBatchAsync(connection, batchTable, shape, ct), async into => await read.CopyAsync(selection, page, into, ct));
                    if (page is not null) probing = new NextPage(read.NextPageAsync(selection, page.LastKey, context.Settings.PageSize, ct), context.Reads);
                    long rows, inserted;
                    try
                    {
                        if (key is not null) (rows, inserted) = await WarehouseTables.MergeBatchAsync(connection, transaction, batchTable, target.Schema, target.Name, shape, key, ct);
                        else rows = inserted = await WarehouseTables.AppendBatchAsync(connection, transaction, batchTable, target.Schema, target.Name, shape, ct);
                        await CommitAsync(context, transaction, cursor is not null ? page?.LastKey : null, async session =>
                        {
                            var sync = await HeldAsync(context, session, ct);
                            var now = context.Clock.GetUtcNow();
                            session.Events.Append(run.JobId, new SyncBatchLoaded(run.JobId, batch + 1, rows, total + rows, page?.LastKey, now, run.Recorder.Actor, run.Recorder.Channel));
                            if (cursor is not null && page is not null)
                                sync.AppendOne(new SyncWatermarkAdvanced(run.SchemaId, run.JobId, batch + 1, cursor.Column, page.LastKey, now, run.Recorder.Actor, run.Recorder.Channel));
                        }, ct);
                    }
                    catch
                    {
                        // Never leave a statement running on the source connection the run is about to close.
                        await TakeAsync(Interlocked.Exchange(ref probing, null), reads: -1);
                        throw;
                    }

                    total += rows;
                    tableRows += inserted;
                    batch++;
                    return (false, page);
                }, ct);
                if (done) break;
                if (context.Settings.AfterBatchCommitted is { } hook) await hook(run, batch);

                if (page is null) break;
                after = page.LastKey;
                if (cursor is not null) watermark = page.LastKey;
            }
        }
        finally
        {
            // However the loop ends, no probe outlives it on the connection the run closes next.
            await TakeAsync(Interlocked.Exchange(ref probing, null), reads: -1);
        }

        await using var finish = await connection.BeginTransactionAsync(ct);
        var table = await WarehouseTables.DescribeAsync(connection, finish, target.Schema, target.Name, run.SchemaId, ct, tableRows);
        await CompleteAsync(context, finish, table, total, batch, watermark, ceiling, ct);
    }

    /// <summary>Fills a COPY into the warehouse from the source. If the source fails part-way, the COPY is cancelled (a
    /// half-written row must never reach the server as if whole) and the source's failure, not the cancel's, goes up.</summary>
    /// <summary>A probe of the next page under way, and the read (connection) it runs on.</summary>
    private sealed record NextPage(Task<KeysetPage?> Probe, int Read);

    /// <summary>The probed page when the probe ran on the read now in use; otherwise (a reconnect since, or none under way)
    /// not taken: a probe of a dropped read is waited for and its failure, the dropped connection's, is not the run's.</summary>
    private static async Task<(bool Taken, KeysetPage? Page)> TakeAsync(NextPage? next, int reads)
    {
#pragma warning disable VSTHRD003 // The probe is this run's own, started by its page loop; a handler has no synchronization context to deadlock on.
        if (next is null) return (false, null);
        if (next.Read == reads) return (true, await next.Probe);
        try
        {
            await next.Probe;
        }
        catch (Exception e) when (e is SourceReadException or NpgsqlException or IOException or InvalidOperationException or OperationCanceledException)
        {
        }

        return (false, null);
#pragma warning restore VSTHRD003
    }

    private static async Task PipeAsync(NpgsqlRawCopyStream into, Func<Stream, Task> fill)
    {
        try
        {
            await fill(into);
        }
        catch
        {
            await into.CancelAsync();
            throw;
        }
        finally
        {
            await into.DisposeAsync();
        }
    }

    private static Task CompleteAsync(
        RunContext context, NpgsqlTransaction transaction, WarehouseTable table, long rows, int batches, string? watermark, long? ceiling, CancellationToken ct)
    {
        var run = context.Run;
        var now = context.Clock.GetUtcNow();
        return CommitAsync(context, transaction, watermark, async session =>
        {
            var sync = await HeldAsync(context, session, ct);
            session.Events.Append(run.JobId, new SyncJobCompleted(run.JobId, rows, batches, now, run.Recorder.Actor, run.Recorder.Channel,
                context.Note is null ? null : SyncModes.Full, context.Note));
            sync.AppendOne(new SyncRunCompleted(run.SchemaId, run.JobId, rows, table, context.State.RunningSince ?? now, now, run.Recorder.Actor, run.Recorder.Channel,
                watermark, watermark is null ? null : context.Field, ceiling));
        }, ct);
    }

    /// <summary>The schema's sync stream, fetched for an optimistic append, after checking the run still holds the schema:
    /// a cancel, resync or disable that came in since the last page stops the run here, its page rolled back.</summary>
    private static async Task<JasperFx.Events.IEventStream<SchemaSync>> HeldAsync(RunContext context, IDocumentSession session, CancellationToken ct)
    {
        var sync = await session.Events.FetchForWriting<SchemaSync>(context.Run.SchemaId, ct);
        if (sync.Aggregate?.RunningJobId != context.Run.JobId) throw new RunStopped(null);
        var schema = await session.LoadAsync<SourceSchema>(context.Run.SchemaId, ct);
        if (schema is null || schema.Removed || !schema.Settings.ShouldSync)
            throw new RunStopped(schema is null || schema.Removed ? "The table was removed from the source; the run stopped." : "The schema was disabled; the run stopped after its current batch.");
        return sync;
    }

    /// <summary>The run no longer holds its schema: <see cref="Reason"/> is what to record, or null when whoever stopped it
    /// (a cancel, a resync) recorded it already.</summary>
    private sealed class RunStopped(string? reason) : Exception(reason ?? "stopped")
    {
        public string? Reason { get; } = reason;
    }

    private static IReadOnlyList<RowFilter> RowFiltersOf(SyncSettings settings) =>
        settings.RowFilters?.OfType<JsonObject>()
            .Select(f => new RowFilter(f["column"]?.GetValue<string>() ?? "", f["operator"]?.GetValue<string>() ?? "", f["value"]?.DeepClone()))
            .ToList() ?? [];

    /// <summary>What a CDC table's changes are applied on: its primary key, which its replica identity sends with each change.</summary>
    private static IReadOnlyList<string> CdcKey(TableShape shape, string table) => shape.PrimaryKey.Count > 0 ? shape.PrimaryKey
        : throw new SourceReadException($"The table '{table}' has no primary key, so its changes cannot be applied to a row. Add a primary key upstream, or sync it as a full refresh.", false, "primary_key_missing");

    /// <summary>What an incremental or xmin run merges on: <c>primary_key_columns</c> when set, else the table's primary key.</summary>
    private static IReadOnlyList<string> MergeKey(SyncSettings settings, TableShape shape, string table)
    {
        var key = settings.PrimaryKeyColumns is { Count: > 0 } chosen ? chosen : shape.PrimaryKey;
        if (key.Count == 0)
            throw new SourceReadException($"The table '{table}' has no primary key to merge its changes on. Set primary_key_columns on the schema or add a primary key upstream, or sync it as a full refresh.", false, "primary_key_missing");
        var missing = key.Where(k => shape.Column(k) is null).ToList();
        if (missing.Count > 0)
            throw new SourceReadException($"The primary key columns {string.Join(", ", missing)} of '{table}' are not synced. Add them to enabled_columns.", false, "primary_key_missing");
        return key;
    }

    /// <summary>
    /// Commits a page (or the end) of the run: its rows and what records them. In the service's own database (the default)
    /// that is one transaction: the events' session writes on the run's connection and transaction (ADR 0041). With a
    /// separate warehouse, the rows commit first together with the schema's mark (its watermark) in the warehouse, then
    /// the events: a crash between the two leaves the warehouse ahead, and the next run starts from its mark, so a page
    /// is neither lost nor appended twice (ADR 0044).
    /// </summary>
    private static async Task CommitAsync(RunContext context, NpgsqlTransaction transaction, string? watermark, Func<IDocumentSession, Task> record, CancellationToken ct)
    {
        if (context.Settings.SeparateWarehouse)
        {
            if (watermark is not null && context.Field is { } field)
                await WarehouseTables.SetMarkAsync(context.Connection, transaction, context.Target.Schema, context.Run.SchemaId, context.Run.JobId, field, watermark, ct);
            await transaction.CommitAsync(ct);
            if (context.Settings.BetweenRowsAndEvents is { } crash) await crash(context.Run);
            await using var own = context.Store.LightweightSession(context.Run.ProjectId);
            CallerMetadata.Stamp(own, context.Run.Recorder);
            await record(own);
            await own.SaveChangesAsync(ct);
            return;
        }

        var options = Marten.Services.SessionOptions.ForTransaction(transaction);
        options.TenantId = context.Run.ProjectId;
        await using var session = context.Store.LightweightSession(options);
        CallerMetadata.Stamp(session, context.Run.Recorder);
        await record(session);
        await session.SaveChangesAsync(ct);
        await transaction.CommitAsync(ct);
    }

    private static async Task<RunFailure?> FailAsync(IDocumentStore store, RunSyncJob run, RunFailure failure, string error, TimeProvider clock, CancellationToken ct)
    {
        await using var session = store.LightweightSession(run.ProjectId);
        CallerMetadata.Stamp(session, run.Recorder);
        var now = clock.GetUtcNow();
        session.Events.Append(run.JobId, new SyncJobFailed(run.JobId, error, failure.ErrorClass, now, run.Recorder.Actor, run.Recorder.Channel));
        var sync = await session.Events.FetchForWriting<SchemaSync>(run.SchemaId, ct);
        var held = sync.Aggregate?.RunningJobId == run.JobId;
        if (held) sync.AppendOne(new SyncRunFailed(run.SchemaId, run.JobId, error, failure.ErrorClass, failure.Retryable, now, run.Recorder.Actor, run.Recorder.Channel));
        await session.SaveChangesAsync(ct);
        // A run that no longer held its schema (cancelled, resynced meanwhile) has no say over the schema's settings.
        return held ? failure : failure with { DisablesSchema = false };
    }

    private static async Task CancelAsync(IDocumentStore store, RunSyncJob run, string reason, TimeProvider clock, CancellationToken ct)
    {
        await using var session = store.LightweightSession(run.ProjectId);
        CallerMetadata.Stamp(session, run.Recorder);
        var now = clock.GetUtcNow();
        session.Events.Append(run.JobId, new SyncJobCancelled(run.JobId, reason, run.Recorder.Actor, run.Recorder.Channel, now));
        var sync = await session.Events.FetchForWriting<SchemaSync>(run.SchemaId, ct);
        if (sync.Aggregate?.RunningJobId == run.JobId)
            sync.AppendOne(new SyncRunCancelled(run.SchemaId, run.JobId, reason, run.Recorder.Actor, run.Recorder.Channel, now));
        await session.SaveChangesAsync(ct);
    }

    /// <summary>Drops a work table of the run on its own connection, or, when that one broke with the run (the database
    /// restarted), on a new one; if neither can, the schema's next full load drops it.</summary>
    private static async Task DropQuietlyAsync(NpgsqlConnection connection, NpgsqlConnection fresh, string table, ILogger logger)
    {
        await using var _ = fresh;
        foreach (var (on, open) in new[] { (connection, false), (fresh, true) })
        {
            try
            {
                if (open) await on.OpenAsync(CancellationToken.None);
                await using var command = new NpgsqlCommand($"DROP TABLE IF EXISTS {table}", on);
                await command.ExecuteNonQueryAsync(CancellationToken.None);
                return;
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException)
            {
                if (open) logger.LogWarning("Could not drop the run's work table {Table}: {Error}", table, e.Message);
            }
        }
    }
}
