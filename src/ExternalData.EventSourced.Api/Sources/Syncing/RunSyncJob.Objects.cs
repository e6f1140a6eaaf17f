using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.SourceTypes.Sync;
using Marten;
using Npgsql;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// Runs of an object source's tables (Stripe, SYNC.md §3.5). Lists are newest first, so a load commits page by page
/// with the earliest <c>created</c> it has reached as the job's position: a delivery after a crash goes on below it
/// (a re-read of at most the page in flight, merged by id, so nothing twice), and the schema's watermark moves only
/// when the run completes (PostHog's rule for newest-first sources). ADR 0048.
/// </summary>
public static partial class RunSyncJobHandler
{
    /// <summary>How far an object run got, as its job's position. <see cref="Earliest"/>: the oldest <c>created</c> of its
    /// committed pages (the next page lies at or below it); <see cref="Latest"/>: the newest it saw (an append's next
    /// watermark); <see cref="Start"/>: the source's clock when the run began (an incremental or webhook schema's next
    /// watermark: every change after it is read again); <see cref="ChangesApplied"/>: the run's changes from the
    /// change log are in, only the listing is left; <see cref="After"/>: the last object committed, where the list goes on.</summary>
    private sealed record ObjectProgress(long? Earliest = null, long? Latest = null, long? Start = null, bool ChangesApplied = false, string? After = null)
    {
        public string Format() => JsonSerializer.Serialize(this);

        public static ObjectProgress Of(string? position)
        {
            if (position is null) return new ObjectProgress();
            try
            {
                return JsonSerializer.Deserialize<ObjectProgress>(position) ?? new ObjectProgress();
            }
            catch (JsonException)
            {
                return new ObjectProgress();
            }
        }

        public ObjectProgress Past(IReadOnlyList<JsonObject> page) => page.Count == 0 ? this : this with
        {
            Earliest = CreatedOf(page[^1]) is { } oldest && (Earliest is null || oldest < Earliest) ? oldest : Earliest,
            Latest = CreatedOf(page[0]) is { } newest && (Latest is null || newest > Latest) ? newest : Latest,
            After = page[^1]["id"]?.GetValue<string>(),
        };
    }

    /// <summary>Stripe's clock and the warehouse's may disagree by a little; a change made this close before a run began
    /// is read again by the next run rather than missed.</summary>
    private static readonly TimeSpan ClockMargin = TimeSpan.FromSeconds(5);

    private const int ObjectPageSize = 100;

    /// <summary>Objects per committed batch: <c>Sync:PageSize</c>, at most 1,000 (objects are held in memory as JSON until
    /// their batch commits; a crash re-reads at most one batch).</summary>
    private static int ObjectsPerBatch(RunContext context) => Math.Clamp(context.Settings.PageSize, ObjectPageSize, 1_000);

    private static long? CreatedOf(JsonObject o) => o["created"] is JsonValue v && v.TryGetValue<long>(out var created) ? created : null;

    private static async Task LoadObjectsAsync(RunContext context, IObjectRead read, IObjectSource source, SecretsCipher cipher, CancellationToken ct)
    {
        var settings = context.Schema.Settings;
        if (context.Job.Mode == SyncModes.Webhook)
        {
            var table = await ObjectTable.OpenAsync(context.Connection, context.Target.Schema, context.Target.Name, context.Run.SchemaId, ct);
            var (rows, batches) = await DrainDeliveriesAsync(context, table, read, source, cipher, new ObjectProgress(), null, context.Job.RowsSynced, context.Job.Batches, ct);
            await FinishObjectsAsync(context, table, rows, batches, context.State.Watermark, null, ct);
            return;
        }

        var known = long.TryParse(context.State.Watermark, CultureInfo.InvariantCulture, out var watermark);
        var full = context.Job.Mode == SyncModes.Full || !known;
        if (!full && settings.SyncType == SyncTypes.Incremental && read.HasChangeLog
            && await FromObjectsAsync(context, () => read.ServerTimeAsync(ct), ct) - DateTimeOffset.FromUnixTimeSeconds(watermark) > read.ChangeLogWindow)
        {
            full = true;
            context.Note = $"The last completed run was more than {read.ChangeLogWindow.TotalDays:0} days ago, beyond what Stripe's events reach back, so this run re-read every object.";
        }

        if (full) await LoadAllObjectsAsync(context, read, source, cipher, ct);
        else await LoadNewObjectsAsync(context, read, watermark, ct);
    }

    /// <summary>Every object, newest first, into a staging table swapped in at the end; a webhook schema then marks the
    /// deliveries its poll covers (made before it began) as processed, so an older delivery never overwrites newer state.</summary>
    private static async Task LoadAllObjectsAsync(RunContext context, IObjectRead read, IObjectSource source, SecretsCipher cipher, CancellationToken ct)
    {
        var (run, connection) = (context.Run, context.Connection);
        var syncType = context.Schema.Settings.SyncType;
        var (staging, resumed) = await ObjectTable.StagingAsync(connection, context.Target.Schema, run.SchemaId, run.JobId, context.Job.Position is not null, ct);
        context.Leftovers.Add(WarehouseTables.Qualified(staging.Schema, staging.Name));
        var progress = resumed ? ObjectProgress.Of(context.Job.Position) : new ObjectProgress();
        var (total, batch) = resumed ? (context.Job.RowsSynced, context.Job.Batches) : (0L, 0);
        if (progress.Start is null && syncType is SyncTypes.Incremental or SyncTypes.Webhook)
            progress = progress with { Start = (await FromObjectsAsync(context, () => read.ServerTimeAsync(ct), ct) - ClockMargin).ToUnixTimeSeconds() };

        if (read.Listable)
            (total, batch, progress) = await ListIntoAsync(context, staging, read, progress, null, total, batch, ct);
        if (syncType == SyncTypes.Webhook)
            (total, batch) = await DrainDeliveriesAsync(context, staging, read, source, cipher, progress, read.Listable ? progress.Start : null, total, batch, ct);

        var watermark = syncType switch
        {
            SyncTypes.Append => progress.Latest?.ToString(CultureInfo.InvariantCulture),
            SyncTypes.Incremental or SyncTypes.Webhook => progress.Start?.ToString(CultureInfo.InvariantCulture),
            _ => null,
        };
        await using var finish = await connection.BeginTransactionAsync(ct);
        var table = await ObjectTable.SwapInAsync(connection, finish, staging, context.Target.Name, run.SchemaId, run.JobId, ct);
        await CompleteAsync(context, finish, table, total, batch, watermark, null, ct);
        context.Leftovers.Remove(WarehouseTables.Qualified(staging.Schema, staging.Name));
    }

    /// <summary>What changed since <paramref name="watermark"/>: for incremental, the change log's updates and deletions
    /// first (staged in the warehouse and applied latest per object), then the objects created since, merged by id; for
    /// append, only the objects created after it.</summary>
    private static async Task LoadNewObjectsAsync(RunContext context, IObjectRead read, long watermark, CancellationToken ct)
    {
        var incremental = context.Schema.Settings.SyncType == SyncTypes.Incremental;
        var table = await ObjectTable.OpenAsync(context.Connection, context.Target.Schema, context.Target.Name, context.Run.SchemaId, ct);
        var progress = ObjectProgress.Of(context.Job.Position);
        var (total, batch) = (context.Job.RowsSynced, context.Job.Batches);
        if (incremental && progress.Start is null)
            progress = progress with { Start = (await FromObjectsAsync(context, () => read.ServerTimeAsync(ct), ct) - ClockMargin).ToUnixTimeSeconds() };
        if (incremental && read.HasChangeLog && !progress.ChangesApplied)
            (total, batch, progress) = await ApplyChangeLogAsync(context, table, read, watermark, progress, total, batch, ct);

        // Append: strictly after the watermark, as PostHog's; incremental: from it, re-reading its second (merged by id).
        (total, batch, progress) = await ListIntoAsync(context, table, read, progress, incremental ? watermark : watermark + 1, total, batch, ct);
        var next = incremental ? progress.Start : Math.Max(watermark, progress.Latest ?? watermark);
        await FinishObjectsAsync(context, table, total, batch, next?.ToString(CultureInfo.InvariantCulture), null, ct);
    }

    private static async Task FinishObjectsAsync(RunContext context, ObjectTable table, long rows, int batches, string? watermark, string? note, CancellationToken ct)
    {
        if (note is not null) context.Note = note;
        await using var finish = await context.Connection.BeginTransactionAsync(ct);
        var described = await WarehouseTables.DescribeAsync(context.Connection, finish, table.Schema, table.Name, context.Run.SchemaId, ct);
        await CompleteAsync(context, finish, described, rows, batches, watermark, null, ct);
    }

    /// <summary>Lists objects created from <paramref name="createdFrom"/> down to the progress's earliest, page by page; a
    /// batch of pages (<see cref="ObjectsPerBatch"/> objects) is merged and committed with the job's new position. The next
    /// page is asked for while a batch commits: the source's latency and the warehouse's work overlap.</summary>
    private static async Task<(long Total, int Batch, ObjectProgress Progress)> ListIntoAsync(
        RunContext context, ObjectTable table, IObjectRead read, ObjectProgress progress, long? createdFrom, long total, int batch, CancellationToken ct)
    {
        // Resumed: on after the last committed object, within its second or below (the source lists the same order again).
        var createdTo = progress.Earliest;
        var after = progress.After;
        var rows = new List<ObjectRow>();
        Task<ObjectPage> Fetch(string? from) => FromObjectsAsync(context, () => read.ListAsync(new ObjectQuery(createdFrom, createdTo, from, ObjectPageSize), ct), ct);
        var next = Fetch(after);
        try
        {
            while (true)
            {
                var page = await next;
                progress = progress.Past(page.Objects);
                rows.AddRange(page.Objects.Select(o => new ObjectRow(o)));
                after = progress.After;
                var last = !page.HasMore || page.Objects.Count == 0;
                if (!last) next = Fetch(after);
                if (rows.Count > 0 && (last || rows.Count >= ObjectsPerBatch(context)))
                {
                    (total, batch) = await CommitObjectsAsync(context, table, read, rows, progress, total, batch, null, ct);
                    rows = [];
                }

                if (last) return (total, batch, progress);
            }
        }
        finally
        {
            // A batch that failed to commit leaves a page in flight: it is waited for (and its failure dropped), never orphaned.
            if (!next.IsCompleted) await next.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private static async Task<(long Total, int Batch)> CommitObjectsAsync(
        RunContext context, ObjectTable table, IObjectRead read, IReadOnlyList<ObjectRow> rows, ObjectProgress progress, long total, int batch,
        Action<IDocumentSession>? alsoRecord, CancellationToken ct)
    {
        var run = context.Run;
        await using var transaction = await context.Connection.BeginTransactionAsync(ct);
        var written = await table.MergeAsync(context.Connection, transaction, rows, read, ct);
        var position = progress.Format();
        await CommitAsync(context, transaction, null, async session =>
        {
            await HeldAsync(context, session, ct);
            alsoRecord?.Invoke(session);
            session.Events.Append(run.JobId, new SyncBatchLoaded(run.JobId, batch + 1, written, total + written, position, context.Clock.GetUtcNow(), run.Recorder.Actor, run.Recorder.Channel));
        }, ct);
        if (context.Settings.AfterBatchCommitted is { } hook) await hook(run, batch + 1);
        return (total + written, batch + 1);
    }

    /// <summary>
    /// The change log since <paramref name="watermark"/>, newest first from the source, staged in a session-private table
    /// of the warehouse (memory stays one page), then applied in id order, the latest change of each object only, a
    /// deletion flagging the row with the object's last state. Committed as the run's first batches; a crash before the
    /// last re-applies them all, which changes nothing, and the listing that follows is what brings objects newer.
    /// </summary>
    private static async Task<(long Total, int Batch, ObjectProgress Progress)> ApplyChangeLogAsync(
        RunContext context, ObjectTable table, IObjectRead read, long watermark, ObjectProgress progress, long total, int batch, CancellationToken ct)
    {
        var connection = context.Connection;
        await WarehouseTables.ExecuteAsync(connection, null,
            "CREATE TEMP TABLE IF NOT EXISTS _ph_changes (object_id text NOT NULL, created bigint NOT NULL, seq bigint NOT NULL, deleted boolean NOT NULL, state jsonb NOT NULL); TRUNCATE _ph_changes", ct);
        context.Leftovers.Add("pg_temp._ph_changes");
        long seq = 0;
        string? after = null;
        do
        {
            var page = await FromObjectsAsync(context, () => read.ChangesAsync(watermark, after, ObjectPageSize, ct), ct);
            await using (var importer = await connection.BeginBinaryImportAsync("COPY pg_temp._ph_changes (object_id, created, seq, deleted, state) FROM STDIN (FORMAT BINARY)", ct))
            {
                foreach (var change in page.Changes)
                {
                    await importer.StartRowAsync(ct);
                    await importer.WriteAsync(change.ObjectId, NpgsqlTypes.NpgsqlDbType.Text, ct);
                    await importer.WriteAsync(change.Created, NpgsqlTypes.NpgsqlDbType.Bigint, ct);
                    await importer.WriteAsync(seq++, NpgsqlTypes.NpgsqlDbType.Bigint, ct);
                    await importer.WriteAsync(change.Deleted, NpgsqlTypes.NpgsqlDbType.Boolean, ct);
                    await importer.WriteAsync(change.Object.ToJsonString(), NpgsqlTypes.NpgsqlDbType.Jsonb, ct);
                }

                await importer.CompleteAsync(ct);
            }

            after = page.HasMore ? page.LastEventId : null;
        }
        while (after is not null);

        string? lastObject = null;
        while (true)
        {
            var rows = new List<ObjectRow>();
            await using (var latest = new NpgsqlCommand("""
                SELECT DISTINCT ON (object_id) object_id, created, deleted, state::text FROM pg_temp._ph_changes
                 WHERE @after::text IS NULL OR object_id > @after ORDER BY object_id, created DESC, seq ASC LIMIT @limit
                """, connection))
            {
                latest.Parameters.AddWithValue("after", (object?)lastObject ?? DBNull.Value);
                latest.Parameters.AddWithValue("limit", ObjectsPerBatch(context));
                await using var reader = await latest.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    lastObject = reader.GetString(0);
                    var deleted = reader.GetBoolean(2);
                    rows.Add(new ObjectRow((JsonObject)JsonNode.Parse(reader.GetString(3))!, deleted, deleted ? DateTimeOffset.FromUnixTimeSeconds(reader.GetInt64(1)) : null));
                }
            }

            var last = rows.Count < ObjectsPerBatch(context);
            if (rows.Count > 0 || last)
                (total, batch) = await CommitObjectsAsync(context, table, read, rows, progress with { ChangesApplied = last }, total, batch, null, ct);
            if (last) return (total, batch, progress with { ChangesApplied = true });
        }
    }

    /// <summary>
    /// The schema's stored webhook deliveries, oldest event first, a page at a time: each page's latest change per object
    /// merged, and its deliveries marked processed in the same transaction. <paramref name="coveredBefore"/>: a poll that
    /// began then holds every change made before it, so those deliveries are only marked. Processed deliveries older
    /// than the retention are trimmed at the end.
    /// </summary>
    private static async Task<(long Total, int Batch)> DrainDeliveriesAsync(
        RunContext context, ObjectTable table, IObjectRead read, IObjectSource source, SecretsCipher cipher, ObjectProgress progress, long? coveredBefore, long total, int batch,
        CancellationToken ct)
    {
        var run = context.Run;
        byte[]? key = null;
        while (true)
        {
            List<WebhookDelivery> deliveries;
            await using (var query = context.Store.QuerySession(run.ProjectId))
            {
                deliveries = [.. await query.Query<WebhookDelivery>()
                    .Where(d => d.SchemaId == run.SchemaId && d.ProcessedAt == null)
                    .OrderBy(d => d.EventCreated).ThenBy(d => d.ReceivedAt).ThenBy(d => d.Id)
                    .Take(ObjectsPerBatch(context)).ToListAsync(ct)];
                if (deliveries.Count > 0 && key is null)
                    key = await query.LoadAsync<DataKey>(run.SourceId, ct) is { } dataKey ? cipher.Unwrap(dataKey) : null;
            }

            if (deliveries.Count == 0 || key is null) break;
            var rows = new List<ObjectRow>();
            foreach (var delivery in deliveries)
            {
                if (coveredBefore is { } before && delivery.EventCreated < before) continue;
                var body = cipher.Unseal(delivery.Payload, key, run.SourceId)["event"]?.GetValue<string>();
                if (body is not null && source.ChangeOf(body) is { } change)
                    rows.Add(new ObjectRow(change.Object, change.Deleted, change.Deleted ? DateTimeOffset.FromUnixTimeSeconds(change.Created) : null));
            }

            var now = context.Clock.GetUtcNow();
            // The job's position is kept as the listing left it: a poll resumed after a crash here does not list again.
            (total, batch) = await CommitObjectsAsync(context, table, read, rows, progress, total, batch, session =>
            {
                foreach (var delivery in deliveries)
                {
                    delivery.ProcessedAt = now;
                    session.Store(delivery);
                }
            }, ct);
        }

        await using var trim = context.Store.LightweightSession(run.ProjectId);
        var cutoff = context.Clock.GetUtcNow() - context.Settings.WebhookRetention;
        trim.DeleteWhere<WebhookDelivery>(d => d.SchemaId == run.SchemaId && d.ProcessedAt != null && d.ProcessedAt < cutoff);
        await trim.SaveChangesAsync(ct);
        return (total, batch);
    }

    /// <summary>One request to the source, tried again after a transient failure as often as the run's retry delays say.</summary>
    private static async Task<T> FromObjectsAsync<T>(RunContext context, Func<Task<T>> call, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (SourceReadException e) when (e.Retryable && attempt < context.Settings.TransientRetryDelays.Count)
            {
                context.Logger.LogWarning("Sync job {Job}: {Error} ({Class}); trying again in {Delay}", context.Run.JobId, e.Message, e.ErrorClass, context.Settings.TransientRetryDelays[attempt]);
                await Task.Delay(context.Settings.TransientRetryDelays[attempt], context.Clock, ct);
            }
        }
    }
}
