using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Messaging;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Sync;
using Marten;
using Npgsql;
using Wolverine.Runtime.Handlers;

namespace ExternalData.EventSourced.Sources;

/// <summary>Run a started job: sent by the trigger in the transaction that started it, to a durable local queue, so a
/// node that dies mid-run hands the job to the next node (or to itself after a restart), which runs it again.</summary>
public sealed record RunSyncJob(string ProjectId, Guid SourceId, Guid SchemaId, Guid JobId)
{
    /// <summary>What the run records, it records as the service's run loop.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Caller Recorder => Caller.System(ProjectId, "sync-runner", $"job-{JobId:N}", $"sync-runner {JobId}");
}

/// <summary>
/// A run's whole life after its start: read the table in keyset pages, write each page into a staging table in one
/// transaction with the event that records it, then swap the table in and record the end, again in one transaction
/// (SYNC.md §3.1). The warehouse is the service's own database, so the rows and their events commit together (ADR 0041).
/// A failure leaves the previous table as it was and says why in words a data engineer can act on.
/// </summary>
public static class RunSyncJobHandler
{
    public const int PageSize = 50_000;

    // A full load of a large table takes as long as it takes; Wolverine's default execution timeout is for messages.
    public static void Configure(HandlerChain chain) => chain.ExecutionTimeoutInSeconds = (int)TimeSpan.FromHours(12).TotalSeconds;

    public static async Task Handle(
        RunSyncJob run, IDocumentStore store, SourceTypeRegistry registry, SecretsCipher cipher, TimeProvider clock, ILogger<RunSyncJob> logger, CancellationToken ct)
    {
        Source? source;
        SourceSchema? schema;
        SchemaSync? state;
        System.Text.Json.Nodes.JsonObject config;
        await using (var query = store.QuerySession(run.ProjectId))
        {
            // Delivered again after a crash, or after the job ended: only a job still running is run.
            if (await query.LoadAsync<SyncJob>(run.JobId, ct) is not { Status: JobStatuses.Running }) return;
            source = await query.LoadAsync<Source>(run.SourceId, ct);
            schema = await query.LoadAsync<SourceSchema>(run.SchemaId, ct);
            state = await query.LoadAsync<SchemaSync>(run.SchemaId, ct);
            if (source is null || schema is null)
            {
                await FailAsync(store, run, "The source or the table was deleted before the run could start.", "source_deleted", false, clock, ct);
                return;
            }

            config = await StoredConfig.LoadAsync(source, query, cipher, ct);
        }

        if (registry.Get(source.SourceType) is not ITableReader reader)
        {
            await FailAsync(store, run, $"Syncing {source.SourceType} tables is not available yet.", "not_supported", false, clock, ct);
            return;
        }

        var warehouse = WarehouseTables.SchemaFor(run.ProjectId);
        // The name is fixed when the table is first created and never recomputed (SYNC.md §1).
        var name = state?.Table?.Name ?? WarehouseTables.NameFor(source.Prefix, source.SourceType, schema.Name);
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(ct);
        string? staging = null;
        try
        {
            await using var read = await reader.OpenAsync(config, schema.Name, schema.Settings.EnabledColumns, ct);
            staging = await WarehouseTables.CreateStagingAsync(connection, warehouse, run.JobId, read.Shape, ct);

            long total = 0;
            var batch = 0;
            string? after = null;
            while (true)
            {
                KeysetPage? page = null;
                if (read.Shape.PageColumn is not null && (page = await read.NextPageAsync(after, PageSize, ct)) is null) break;

                await using var transaction = await connection.BeginTransactionAsync(ct);
                await using (var copy = await WarehouseTables.CopyIntoAsync(connection, warehouse, staging, read.Shape, ct))
                    await read.CopyAsync(page, copy, ct);
                var rows = page?.Rows ?? await CountAsync(connection, transaction, warehouse, staging, ct);
                total += rows;
                batch++;
                await AppendAsync(store, transaction, run, session =>
                {
                    session.Events.Append(run.JobId, new SyncBatchLoaded(run.JobId, batch, rows, total, page?.LastKey, clock.GetUtcNow(), run.Recorder.Actor, run.Recorder.Channel));
                    return Task.CompletedTask;
                }, ct);
                await transaction.CommitAsync(ct);

                if (page is null) break;
                after = page.LastKey;
            }

            await using (var finish = await connection.BeginTransactionAsync(ct))
            {
                var table = await WarehouseTables.SwapInAsync(connection, finish, warehouse, staging, name, run.SchemaId, ct);
                staging = null;
                var now = clock.GetUtcNow();
                var started = state?.RunningSince ?? now;
                await AppendAsync(store, finish, run, async session =>
                {
                    session.Events.Append(run.JobId, new SyncJobCompleted(run.JobId, table.RowCount, batch, now, run.Recorder.Actor, run.Recorder.Channel));
                    await AppendToSyncStreamAsync(session, run.SchemaId, new SyncRunCompleted(run.SchemaId, run.JobId, table.RowCount, table, started, now, run.Recorder.Actor, run.Recorder.Channel), ct);
                }, ct);
                await finish.CommitAsync(ct);
            }

            logger.LogInformation("Synced {Schema} of source {Source} into {Warehouse}.{Table} (job {Job})", schema.Name, source.Id, warehouse, name, run.JobId);
        }
        catch (SourceReadException e)
        {
            await FailAsync(store, run, e.Message, e.ErrorClass, e.Retryable, clock, CancellationToken.None);
        }
        catch (WarehouseConflictException e)
        {
            await FailAsync(store, run, e.Message, "warehouse_conflict", false, clock, CancellationToken.None);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not the source's fault, and its text may name our internals: logged here, a neutral sentence for the user.
            logger.LogError(e, "Sync job {Job} of schema {Schema} failed on the service's side", run.JobId, run.SchemaId);
            await FailAsync(store, run, "The run failed on the service's side, not the source's; the next run tries again.", "internal", true, clock, CancellationToken.None);
        }
        finally
        {
            if (staging is not null) await DropQuietlyAsync(connection, warehouse, staging, logger);
        }
    }

    private static async Task AppendAsync(IDocumentStore store, NpgsqlTransaction transaction, RunSyncJob run, Func<IDocumentSession, Task> append, CancellationToken ct)
    {
        // The session writes on the run's own connection and transaction: its events commit with the rows, or not at all.
        var options = Marten.Services.SessionOptions.ForTransaction(transaction);
        options.TenantId = run.ProjectId;
        await using var session = store.LightweightSession(options);
        CallerMetadata.Stamp(session, run.Recorder);
        await append(session);
        await session.SaveChangesAsync(ct);
    }

    /// <summary>The end of a run on the schema's sync stream, fetched for writing so the stored state carries the stream's
    /// version, as a trigger's optimistic start expects.</summary>
    private static async Task AppendToSyncStreamAsync(IDocumentSession session, Guid schemaId, object ended, CancellationToken ct)
    {
        var stream = await session.Events.FetchForWriting<SchemaSync>(schemaId, ct);
        stream.AppendOne(ended);
    }

    private static async Task FailAsync(IDocumentStore store, RunSyncJob run, string error, string errorClass, bool retryable, TimeProvider clock, CancellationToken ct)
    {
        await using var session = store.LightweightSession(run.ProjectId);
        CallerMetadata.Stamp(session, run.Recorder);
        var now = clock.GetUtcNow();
        session.Events.Append(run.JobId, new SyncJobFailed(run.JobId, error, errorClass, now, run.Recorder.Actor, run.Recorder.Channel));
        await AppendToSyncStreamAsync(session, run.SchemaId, new SyncRunFailed(run.SchemaId, run.JobId, error, errorClass, retryable, now, run.Recorder.Actor, run.Recorder.Channel), ct);
        await session.SaveChangesAsync(ct);
    }

    private static async Task<long> CountAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string table, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM {WarehouseTables.Quote(schema)}.{WarehouseTables.Quote(table)}", connection, transaction);
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    private static async Task DropQuietlyAsync(NpgsqlConnection connection, string schema, string staging, ILogger logger)
    {
        try
        {
            await WarehouseTables.DropStagingAsync(connection, schema, staging, CancellationToken.None);
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            logger.LogWarning("Could not drop the staging table {Schema}.{Table}: {Error}", schema, staging, e.Message);
        }
    }
}
