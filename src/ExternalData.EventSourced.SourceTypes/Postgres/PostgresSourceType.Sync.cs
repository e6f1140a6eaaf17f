using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using ExternalData.EventSourced.SourceTypes.Sync;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>Reading a Postgres table into the warehouse (SYNC.md §2, §3.1): the source casts every column to its
/// warehouse type, and binary COPY carries the rows without decoding them on the way.</summary>
public sealed partial class PostgresSourceType : ITableReader
{
    public async Task<ITableRead> OpenAsync(TableReadRequest request, CancellationToken ct)
    {
        var (connection, problem) = await OpenAsync(request.Config, ct);
        if (connection is null) throw new SourceReadException(problem!.Message ?? "Could not connect to the source.", Retryable(problem.Code), problem.Code ?? "connection_failed");
        try
        {
            // One snapshot for the whole read: pages, probes and the watermark all see the table as it was when the run began.
            await using (var begin = new NpgsqlCommand("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", connection))
                await Guard(() => begin.ExecuteNonQueryAsync(ct));
            if (request.Snapshot is { } snapshot)
            {
                if (!System.Text.RegularExpressions.Regex.IsMatch(snapshot, "^[0-9A-Fa-f-]+$")) throw new ArgumentException("Not a snapshot name.", nameof(request));
                await using var import = new NpgsqlCommand($"SET TRANSACTION SNAPSHOT '{snapshot}'", connection);
                await Guard(() => import.ExecuteNonQueryAsync(ct));
            }
            var (schema, name) = Split(request.Table, ConfigSchema.Lookup(request.Config, "schema"));
            // One catalog read: the filters may name any column, the copy reads the enabled ones.
            var all = await PostgresTableShape.ReadAsync(connection, schema, name, request.Table, ct);
            var shape = PostgresTableShape.Enabled(all, request.EnabledColumns);
            var blocks = await HeapBlocksAsync(connection, Qualified(schema, name), ct);
            return new PostgresTableRead(connection, Qualified(schema, name), shape, PostgresRowFilters.Where(request.RowFilters, all), blocks);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>A plain table's size in blocks and rows per block, read inside the snapshot (so every row it shows lives in a
    /// block below the size), when the server can scan a range of blocks (TID range scans, PostgreSQL 14+); else null.</summary>
    private static async Task<HeapBlocks?> HeapBlocksAsync(NpgsqlConnection connection, string qualified, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT c.relkind::text, current_setting('server_version_num')::int,
                   pg_relation_size(c.oid) / current_setting('block_size')::bigint, c.reltuples::float8, c.relpages::bigint,
                   pg_relation_filenode(c.oid)::bigint, txid_current_snapshot()::text
              FROM pg_class c WHERE c.oid = to_regclass(@relation)
            """, connection);
        command.Parameters.AddWithValue("relation", qualified);
        await using var reader = await Guard(() => command.ExecuteReaderAsync(ct));
        if (!await reader.ReadAsync(ct) || reader.GetString(0) != "r" || reader.GetInt32(1) < 140000) return null;
        var (blocks, tuples, pages) = (reader.GetInt64(2), reader.GetDouble(3), reader.GetInt64(4));
        return new HeapBlocks(blocks, tuples > 0 && pages > 0 ? Math.Max(1, tuples / pages) : 100, reader.GetInt64(5), reader.GetString(6));
    }

    /// <summary>A plain table's heap as the read's snapshot sees it: its size, and what tells a later read whether the blocks
    /// an earlier one loaded still hold the same rows — the file the heap lives in (a rewrite makes a new one) and the
    /// snapshot itself (<c>xmin:xmax:in-progress</c>).</summary>
    private sealed record HeapBlocks(long Count, double RowsPerBlock, long FileNode, string Snapshot);

    /// <summary>Where a block-paged load stands: every row of the blocks up to <see cref="Block"/> as of <see cref="Snapshot"/>
    /// is committed; <see cref="FileNode"/> and <see cref="Reading"/> (a digest of the columns and filters read) tell
    /// whether another read may go on from it.</summary>
    private sealed record BlockPoint(long Block, string Snapshot, long FileNode, string Reading);

    // A wrong password or a refused host stays wrong until someone acts; an unreachable server may come back.
    private static bool Retryable(string? code) => code is null or "connection_failed" or "timeout" or "connection_timeout" or "connection_refused" or "too_many_connections";

    /// <summary>Discovery names a table <c>schema.table</c> when the source reads every schema, else by its bare name.</summary>
    private static (string Schema, string Name) Split(string table, string? configuredSchema) =>
        string.IsNullOrEmpty(configuredSchema) && table.IndexOf('.', StringComparison.Ordinal) is > 0 and var dot
            ? (table[..dot], table[(dot + 1)..])
            : (string.IsNullOrEmpty(configuredSchema) ? "public" : configuredSchema, table);

    internal static string Quote(string identifier) => $"\"{identifier.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";

    private static string Qualified(string schema, string name) => $"{Quote(schema)}.{Quote(name)}";

    /// <summary>
    /// A read of one table in one snapshot. A whole-table read of a plain table pages on physical position (ranges of heap
    /// blocks: a TID range scan is a sequential read, with no probe per page and no index walk), which the one snapshot makes
    /// exact; otherwise, and for changes, pages are keyed on a column (the primary key, the cursor), each found by a probe.
    /// </summary>
    private sealed class PostgresTableRead(NpgsqlConnection connection, string qualified, TableShape shape, string? filters, HeapBlocks? blocks) : ITableRead
    {
        private const long XidSpace = 1L << 32;
        private const string Position = "ctid";

        public TableShape Shape => shape;

        public string? PageColumnFor(RowSelection selection) =>
            selection is CursorRows cursor ? cursor.Column : selection == RowSelection.All && blocks is not null ? Position : shape.PageColumn;

        public bool PagesOutliveTheRead(RowSelection selection) => PageColumnFor(selection) != Position;

        public async Task<KeysetPage?> NextPageAsync(RowSelection selection, string? after, int size, CancellationToken ct)
        {
            if (PageColumnFor(selection) == Position)
            {
                // Pages of whole blocks, about `size` rows each; the last one is open-ended.
                var first = after is null ? 0 : long.Parse(after, System.Globalization.CultureInfo.InvariantCulture) + 1;
                if (first >= Math.Max(1, blocks!.Count)) return null;
                var last = Math.Min(blocks.Count - 1, first + Math.Max(1, (long)(size / blocks.RowsPerBlock)) - 1);
                return new KeysetPage(after, (last >= blocks.Count - 1 ? long.MaxValue / 2 : last).ToString(System.Globalization.CultureInfo.InvariantCulture), 0);
            }

            var key = PageKey(selection);
            var conditions = Conditions(selection, after, null);
            await using var command = new NpgsqlCommand(
                $"SELECT max(k)::text, count(*) FROM (SELECT {Quote(key.Name)} AS k FROM {qualified}{Where(conditions)} ORDER BY {Quote(key.Name)} LIMIT {size}) p",
                connection);
            await using var reader = await Guard(() => command.ExecuteReaderAsync(ct));
            await reader.ReadAsync(ct);
            return await reader.IsDBNullAsync(0, ct) ? null : new KeysetPage(after, reader.GetString(0), reader.GetInt64(1));
        }

        public Task<long> CopyAsync(RowSelection selection, KeysetPage? page, Stream destination, CancellationToken ct) =>
            CopyAsync(Columns, Conditions(selection, page?.After, page?.LastKey), destination, ct);

        public async Task<long> CountAsync(RowSelection selection, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand($"SELECT count(*) FROM {qualified}{Where(Conditions(selection, null, null))}", connection) { CommandTimeout = 0 };
            return (long)(await Guard(() => command.ExecuteScalarAsync(ct)))!;
        }

        public Task<long> CopyKeysAsync(RowSelection selection, Stream destination, CancellationToken ct) =>
            CopyAsync(string.Join(", ", shape.PrimaryKey.Select(k => Column(k).ReadAs)), Conditions(selection, null, null), destination, ct);

        private string Columns => string.Join(", ", shape.Columns.Select(c => c.ReadAs));

        /// <summary>The columns and filters this read reads, as a digest: a load goes on from another read only if they match.</summary>
        private string Reading => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes($"{Columns}\n{filters}")))[..16];

        public string? ResumePointAfter(KeysetPage page) =>
            PageColumnFor(RowSelection.All) != Position || blocks is null ? null
                : System.Text.Json.JsonSerializer.Serialize(new BlockPoint(long.Parse(page.LastKey, System.Globalization.CultureInfo.InvariantCulture), blocks.Snapshot, blocks.FileNode, Reading));

        public Task<LoadResume?> ResumeAsync(string point, CancellationToken ct)
        {
            BlockPoint? committed = null;
            try
            {
                if (point.StartsWith('{')) committed = System.Text.Json.JsonSerializer.Deserialize<BlockPoint>(point);
            }
            catch (System.Text.Json.JsonException)
            {
                // Not a point this reader wrote: the load starts over.
            }

            // The blocks hold the same tuples only in the same heap file; rows of another column set or filter were not loaded.
            var resumable = committed is not null && blocks is not null && committed.FileNode == blocks.FileNode && committed.Reading == Reading
                            && shape.PrimaryKey.Count > 0 && shape.PrimaryKey.All(k => shape.Column(k) is not null);
            return Task.FromResult<LoadResume?>(resumable
                ? new LoadResume(committed!.Block.ToString(System.Globalization.CultureInfo.InvariantCulture), System.Text.Json.JsonSerializer.Serialize(committed with { Snapshot = blocks!.Snapshot }),
                    new LoadedBlocks(committed.Block, committed.Snapshot, Unchanged: true), new LoadedBlocks(committed.Block, committed.Snapshot, Unchanged: false))
                : null);
        }

        /// <summary>The rows of the blocks up to <see cref="Through"/> that an earlier read in <see cref="Snapshot"/> loaded and
        /// that no transaction has written since (<see cref="Unchanged"/>), or the others: rows inserted or updated since.</summary>
        private sealed record LoadedBlocks(long Through, string Snapshot, bool Unchanged) : RowSelection;

        private async Task<long> CopyAsync(string columns, List<string> conditions, Stream destination, CancellationToken ct)
        {
            // COPY takes no parameters: every bound is a literal, dollar-quoted so no value can end it.
            await using var rows = await Guard(() => connection.BeginRawBinaryCopyAsync($"COPY (SELECT {columns} FROM {qualified}{Where(conditions)}) TO STDOUT (FORMAT BINARY)", ct));
            // Chunk by chunk, so a failure reading the source is told apart from one writing the destination.
            // A read answers one row (one CopyData message) at most: rows are gathered until the buffer is nearly full, then
            // written on in one go, and no call allocates (no closure, no task) on the way.
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(81_920);
            var counted = new BinaryCopyRows();
            try
            {
                var filled = 0;
                while (true)
                {
                    int read;
                    try
                    {
                        read = await rows.ReadAsync(buffer.AsMemory(filled), ct);
                    }
                    catch (Exception e) when (Unreadable(e) is { } failure)
                    {
                        throw failure;
                    }

                    filled += read;
                    if (read > 0 && filled < buffer.Length - 8_192) continue;
                    if (filled > 0)
                    {
                        counted.Feed(buffer.AsSpan(0, filled));
                        await destination.WriteAsync(buffer.AsMemory(0, filled), ct);
                        filled = 0;
                    }

                    if (read == 0) break;
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }

            return counted.Rows;
        }

        public async Task<long> SnapshotCeilingAsync(CancellationToken ct)
        {
            await using var command = new NpgsqlCommand("SELECT txid_snapshot_xmin(txid_current_snapshot())", connection);
            return (long)(await Guard(() => command.ExecuteScalarAsync(ct)))!;
        }

        public async Task<string?> MaxAsync(string column, CancellationToken ct)
        {
            var type = Column(column).Type;
            await using var command = new NpgsqlCommand($"SELECT max({Quote(column)}::{type})::text FROM {qualified}{Where(filters is null ? [] : [filters])}", connection);
            return await Guard(() => command.ExecuteScalarAsync(ct)) as string;
        }

        public async Task<long> DuplicateKeysAsync(IReadOnlyList<string> key, CancellationToken ct)
        {
            var columns = string.Join(", ", key.Select(k => Quote(Column(k).Name)));
            await using var command = new NpgsqlCommand(
                $"SELECT count(*) FROM (SELECT 1 FROM {qualified}{Where(filters is null ? [] : [filters])} GROUP BY {columns} HAVING count(*) > 1) d", connection);
            return (long)(await Guard(() => command.ExecuteScalarAsync(ct)))!;
        }

        private WarehouseColumn Column(string name) => shape.Column(name)
            ?? throw new SourceReadException($"The column '{name}' is not among the columns this schema syncs. Add it to enabled_columns or pick another.", false, "column_missing");

        private WarehouseColumn PageKey(RowSelection selection) => Column(PageColumnFor(selection)
            ?? throw new InvalidOperationException("This read has no page column; copy it in one batch."));

        /// <summary>The WHERE conditions of a read: the row filters, the selection's start (first page only: later pages
        /// start after the previous one, which is past it), and the page's bounds.</summary>
        private List<string> Conditions(RowSelection selection, string? after, string? last)
        {
            var conditions = new List<string>();
            if (filters is not null) conditions.Add(filters);
            switch (selection)
            {
                case CursorRows cursor when after is null:
                    var type = Column(cursor.Column).Type;
                    var from = $"{Literal(cursor.From)}::{type}";
                    if (cursor.LookbackSeconds is > 0 && IsDateTime(type)) from = $"({from} - interval '{cursor.LookbackSeconds.Value} seconds')";
                    conditions.Add($"{Quote(cursor.Column)} {(cursor.Inclusive ? ">=" : ">")} {from}");
                    break;
                case ChangedRows changed:
                    // xmin is a 32-bit counter that wraps: "at or after Since" in modular arithmetic, as Postgres compares xids.
                    conditions.Add($"((xmin::text::bigint - {changed.Since % XidSpace} + {XidSpace}) % {XidSpace}) < {XidSpace / 2}");
                    break;
                case LoadedBlocks loaded:
                    if (loaded.Through < long.MaxValue / 2) conditions.Add($"ctid < '({loaded.Through + 1},0)'::tid");
                    var visible = VisibleIn(loaded.Snapshot);
                    conditions.Add(loaded.Unchanged ? visible : $"NOT ({visible})");
                    break;
            }

            if (PageColumnFor(selection) == Position)
            {
                if (after is not null) conditions.Add($"ctid >= '({long.Parse(after, System.Globalization.CultureInfo.InvariantCulture) + 1},0)'::tid");
                if (last is not null && long.Parse(last, System.Globalization.CultureInfo.InvariantCulture) < long.MaxValue / 2)
                    conditions.Add($"ctid < '({long.Parse(last, System.Globalization.CultureInfo.InvariantCulture) + 1},0)'::tid");
            }
            else if (after is not null || last is not null)
            {
                var key = PageKey(selection);
                if (after is not null) conditions.Add($"{Quote(key.Name)} > {Literal(after)}::{key.Type}");
                if (last is not null) conditions.Add($"{Quote(key.Name)} <= {Literal(last)}::{key.Type}");
            }

            return conditions;
        }

        /// <summary>
        /// Whether a live row's inserting transaction had committed for <paramref name="snapshot"/> (<c>xmin:xmax:xip</c>): then
        /// the row is the very version that snapshot read, as a live row never moves without a new version (a rewrite makes a
        /// new heap file). xmin is 32 bits and wraps, so it is compared to the snapshot's bounds modulo 2^32, as Postgres does;
        /// a row frozen more than 2^31 transactions ago reads as changed, which only costs reading it again.
        /// </summary>
        private static string VisibleIn(string snapshot)
        {
            var parts = snapshot.Split(':');
            var xmax = long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) % XidSpace;
            var inProgress = parts[2].Split(',', StringSplitOptions.RemoveEmptyEntries)
                .Select(x => (long.Parse(x, System.Globalization.CultureInfo.InvariantCulture) % XidSpace).ToString(System.Globalization.CultureInfo.InvariantCulture)).ToList();
            var precedes = $"(xmin::text::bigint < 3 OR (({xmax} - xmin::text::bigint + {XidSpace}) % {XidSpace}) BETWEEN 1 AND {XidSpace / 2 - 1})";
            return inProgress.Count == 0 ? precedes : $"{precedes} AND xmin::text::bigint NOT IN ({string.Join(", ", inProgress)})";
        }

        private static string Where(List<string> conditions) => conditions.Count == 0 ? "" : " WHERE " + string.Join(" AND ", conditions.Select(c => $"({c})"));

        private static bool IsDateTime(string type) => type.StartsWith("timestamp", StringComparison.Ordinal) || type == "date";

        public ValueTask DisposeAsync() => connection.DisposeAsync();
    }

    /// <summary>A value as a dollar-quoted literal: its tag is random, so no value can close it.</summary>
    internal static string Literal(string value)
    {
        var tag = "$k" + Guid.NewGuid().ToString("N")[..8] + "$";
        return $"{tag}{value}{tag}";
    }

    internal static async Task<T> Guard<T>(Func<Task<T>> read)
    {
        try
        {
            return await read();
        }
        catch (Exception e) when (Unreadable(e) is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>What a failure while reading the source means for the run, or null when it is not the source's.</summary>
    private static SourceReadException? Unreadable(Exception e) =>
        e is PostgresException pg && Failure(pg) is { } failure ? failure
        : e is NpgsqlException { IsTransient: true } or IOException or TimeoutException || e.InnerException is IOException or TimeoutException
            ? new SourceReadException("The connection to the source was lost while reading.", true, "connection_lost")
        : null;

    /// <summary>
    /// What a server's refusal means for a run (SYNC.md §5). A refusal that stays until someone acts (a revoked grant, a
    /// table or column gone) is not retryable and says what to do; one the server may soon take back (too many connections,
    /// a restart, a statement timeout, a serialization failure) is. The server's own message text names only the
    /// table or column, never a credential; the rest of the exception (its connection string, its detail) is not used.
    /// </summary>
    private static SourceReadException? Failure(PostgresException e) => e.SqlState switch
    {
        PostgresErrorCodes.InsufficientPrivilege =>
            new SourceReadException($"Permission denied reading the table: {e.MessageText}. Grant SELECT on it to the source's user, then enable the schema again.", false, "permission_denied"),
        PostgresErrorCodes.UndefinedTable =>
            new SourceReadException($"The table is gone upstream ({e.MessageText}). Refresh the source's schemas; if it was renamed, enable the new name.", false, "table_missing"),
        PostgresErrorCodes.UndefinedColumn =>
            new SourceReadException($"A column this schema reads is gone upstream ({e.MessageText}). Refresh the source's schemas and update enabled_columns or the incremental field.", false, "column_missing"),
        PostgresErrorCodes.InvalidPassword or PostgresErrorCodes.InvalidAuthorizationSpecification =>
            new SourceReadException("The database rejected the username or password. Update the source's credentials, then enable the schema again.", false, "invalid_credentials"),
        PostgresErrorCodes.TooManyConnections or PostgresErrorCodes.CannotConnectNow or PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown
            or PostgresErrorCodes.ConnectionFailure or PostgresErrorCodes.ConnectionException =>
            new SourceReadException("The source database was unavailable (restarting, or out of connections).", true, "source_unavailable"),
        PostgresErrorCodes.QueryCanceled or PostgresErrorCodes.LockNotAvailable =>
            new SourceReadException("A read of the source timed out.", true, "timeout"),
        PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
            new SourceReadException("A read of the source conflicted with a concurrent change.", true, "conflict"),
        _ => null,
    };
}
