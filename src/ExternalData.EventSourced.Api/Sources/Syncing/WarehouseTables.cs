using System.Security.Cryptography;
using System.Text;
using ExternalData.EventSourced.SourceTypes.Sync;
using Npgsql;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// The warehouse side of a run (SYNC.md §1): a PostgreSQL schema per project, PostHog's table names fixed at first
/// creation, a staging table a full refresh fills and swaps in whole, and the rule that the service never drops,
/// replaces or merges into a table it did not create (its tables carry their schema id in a comment).
/// Every statement runs on the connection and transaction the run loop owns, so rows and the events that record them
/// commit together.
/// </summary>
public static class WarehouseTables
{
    public const string MetadataSyncedAt = "_ph_synced_at";
    internal const string OwnerMark = "externaldata:schema=";
    private const int MaxIdentifierBytes = 63;

    /// <summary><c>warehouse_&lt;project&gt;</c>, with anything but letters, digits and underscores folded to an underscore.</summary>
    public static string SchemaFor(string projectId) =>
        "warehouse_" + new string(projectId.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_').ToArray());

    /// <summary>PostHog's name (ref §2.5): <c>lower(prefix + source_type + "_" + table)</c> with "." as "__"; a name longer than
    /// PostgreSQL's 63 bytes is cut and given a short stable hash of the whole name.</summary>
    public static string NameFor(string? prefix, string sourceType, string table)
    {
        var name = $"{prefix}{sourceType}_{table.Replace(".", "__", StringComparison.Ordinal)}".ToLowerInvariant();
        if (Encoding.UTF8.GetByteCount(name) <= MaxIdentifierBytes) return name;
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)))[..8];
        var cut = name;
        while (Encoding.UTF8.GetByteCount(cut) > MaxIdentifierBytes - hash.Length - 1) cut = cut[..^1];
        return $"{cut}_{hash}";
    }

    public static string Quote(string identifier) => $"\"{identifier.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";

    /// <summary>The project's warehouse schema, and with a separate warehouse its marks table (ADR 0044). Two runs of one
    /// project may race to create either (IF NOT EXISTS is not atomic in PostgreSQL): the loser finds it there.</summary>
    public static async Task EnsureSchemaAsync(NpgsqlConnection connection, string schema, bool withMarks, CancellationToken ct)
    {
        await CreateRacingAsync(connection, $"CREATE SCHEMA IF NOT EXISTS {Quote(schema)}", ct);
        if (withMarks)
            await CreateRacingAsync(connection,
                $"CREATE TABLE IF NOT EXISTS {Qualified(schema, Marks)} (schema_id uuid PRIMARY KEY, job_id uuid NOT NULL, field text NOT NULL, watermark text NOT NULL, marked_at timestamptz NOT NULL)", ct);
    }

    private static async Task CreateRacingAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        try
        {
            await ExecuteAsync(connection, null, sql, ct);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DuplicateSchema or PostgresErrorCodes.DuplicateTable)
        {
            // Another run of the project created it between our check and our create: it is there.
        }
    }

    /// <summary>A staging table with the run's columns, the <paramref name="kept"/> columns of the table it replaces that
    /// upstream no longer has (they stay, NULL, so nothing downstream that names them breaks), and <c>_ph_synced_at</c>.</summary>
    /// <remarks>A staging table is marked with its schema id, so the schema's next full load drops any an earlier run could
    /// not (its connection died with the database, say) before making its own.</remarks>
    public static async Task<string> CreateStagingAsync(
        NpgsqlConnection connection, string schema, Guid schemaId, Guid jobId, TableShape shape, IReadOnlyList<WarehouseTableColumn> kept, CancellationToken ct)
    {
        var staging = $"_stage_{jobId:N}";
        var mark = $"{StagingMark}{schemaId}";
        var leftovers = new List<string>();
        await using (var find = new NpgsqlCommand("""
            SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = @schema AND c.relkind = 'r' AND obj_description(c.oid, 'pg_class') = @mark
            """, connection))
        {
            find.Parameters.AddWithValue("schema", schema);
            find.Parameters.AddWithValue("mark", mark);
            await using var reader = await find.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct)) leftovers.Add(reader.GetString(0));
        }

        var columns = string.Join(", ", shape.Columns.Select(c => $"{Quote(c.Name)} {c.Type}").Concat(kept.Select(c => $"{Quote(c.Name)} {c.Type}")));
        await ExecuteAsync(connection, null, $"""
            {string.Concat(leftovers.Append(staging).Distinct().Select(t => $"DROP TABLE IF EXISTS {Quote(schema)}.{Quote(t)};"))}
            CREATE TABLE {Quote(schema)}.{Quote(staging)} ({columns}{(columns.Length > 0 ? ", " : "")}{MetadataSyncedAt} timestamptz NOT NULL DEFAULT now());
            COMMENT ON TABLE {Quote(schema)}.{Quote(staging)} IS '{mark}';
            """, ct);
        return staging;
    }

    private const string StagingMark = "externaldata:staging-of=";

    /// <summary>The columns of the schema's current table that upstream no longer has (none when there is no table yet).</summary>
    public static async Task<IReadOnlyList<WarehouseTableColumn>> DroppedUpstreamAsync(
        NpgsqlConnection connection, string schema, string name, Guid schemaId, TableShape shape, CancellationToken ct)
    {
        await using var transaction = await connection.BeginTransactionAsync(ct);
        if (!await IsOursAsync(connection, transaction, schema, name, schemaId, ct)) return [];
        return (await ColumnsAsync(connection, transaction, schema, name, ct)).Where(c => shape.Column(c.Name) is null && !WarehouseColumnDrift.IsMetadata(c.Name)).ToList();
    }

    public const string MetadataDeleted = "_ph_deleted";
    public const string MetadataDeletedAt = "_ph_deleted_at";

    /// <summary>A CDC table's delete marks (SYNC.md §3.6): a row deleted upstream stays with its last values, flagged.</summary>
    public static Task AddCdcColumnsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string table, CancellationToken ct) =>
        ExecuteAsync(connection, transaction, $"""
            ALTER TABLE {Quote(schema)}.{Quote(table)} ADD COLUMN IF NOT EXISTS {MetadataDeleted} boolean NOT NULL DEFAULT false,
                ADD COLUMN IF NOT EXISTS {MetadataDeletedAt} timestamptz
            """, ct);

    /// <summary>The staging table a full load of <paramref name="jobId"/> left (a crash, a node shut down), if it is still
    /// there with the columns this run would create: then the load may go on in it.</summary>
    public static async Task<string?> StagingToGoOnAsync(
        NpgsqlConnection connection, string schema, Guid jobId, TableShape shape, IReadOnlyList<WarehouseTableColumn> kept, CancellationToken ct)
    {
        var staging = $"_stage_{jobId:N}";
        await using var transaction = await connection.BeginTransactionAsync(ct);
        var columns = await ColumnsAsync(connection, transaction, schema, staging, ct);
        await transaction.CommitAsync(ct);
        // Names only: the types are the reader's to vouch for (its resume point carries a digest of what it reads, casts included).
        var expected = shape.Columns.Select(c => c.Name).Concat(kept.Select(c => c.Name)).Append(MetadataSyncedAt);
        return columns.Count > 0 && columns.Select(c => c.Name).ToHashSet().SetEquals(expected) ? staging : null;
    }

    /// <summary>
    /// Keeps in a staging table only the rows whose <paramref name="key"/> a load going on from an earlier read found unchanged
    /// upstream: the keys are copied (by <paramref name="fill"/>) into a temporary table and every other row goes — deleted
    /// or changed upstream since it was loaded, or loaded by a batch whose events never committed. Answers the rows kept
    /// (the keys copied) and the rows dropped.
    /// </summary>
    public static async Task<(long Kept, long Dropped)> KeepOnlyAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string staging, TableShape shape, Func<Stream, Task<long>> fill, CancellationToken ct)
    {
        var key = shape.PrimaryKey.Select(k => shape.Column(k)!).ToList();
        var unchanged = $"_unchanged_{staging}";
        await ExecuteAsync(connection, transaction,
            $"CREATE TEMP TABLE {Quote(unchanged)} ({string.Join(", ", key.Select(c => $"{Quote(c.Name)} {c.Type}"))}) ON COMMIT DROP", ct);
        long kept = 0;
        var into = await connection.BeginRawBinaryCopyAsync($"COPY pg_temp.{Quote(unchanged)} ({string.Join(", ", key.Select(c => Quote(c.Name)))}) FROM STDIN (FORMAT BINARY)", ct);
        try
        {
            kept = await fill(into);
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

        // The anti-join hashes every kept key: given room, it stays in memory instead of spilling in batches to disk.
        var dropped = await ExecuteAsync(connection, transaction, $"""
            SET LOCAL work_mem = '256MB';
            ANALYZE pg_temp.{Quote(unchanged)};
            DELETE FROM {Qualified(schema, staging)} s
             WHERE NOT EXISTS (SELECT 1 FROM pg_temp.{Quote(unchanged)} u WHERE {string.Join(" AND ", key.Select(c => $"u.{Quote(c.Name)} = s.{Quote(c.Name)}"))})
            """, ct);
        return (kept, dropped);
    }

    public static async Task<long> CountAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string table, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM {Qualified(schema, table)}", connection, transaction) { CommandTimeout = 0 };
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    /// <summary>Empties a staging table (a load starting over).</summary>
    public static Task EmptyAsync(NpgsqlConnection connection, string schema, string staging, CancellationToken ct) =>
        ExecuteAsync(connection, null, $"TRUNCATE {Quote(schema)}.{Quote(staging)}", ct);

    /// <summary>Opens a binary COPY of the run's columns into the staging table; <c>_ph_synced_at</c> takes its default.</summary>
    public static Task<NpgsqlRawCopyStream> CopyIntoAsync(NpgsqlConnection connection, string schema, string staging, TableShape shape, CancellationToken ct) =>
        connection.BeginRawBinaryCopyAsync(
            $"COPY {Quote(schema)}.{Quote(staging)} ({string.Join(", ", shape.Columns.Select(c => Quote(c.Name)))}) FROM STDIN (FORMAT BINARY)", ct);

    /// <summary>Swaps the staging table in for the schema's table, in the caller's transaction: readers see the old table
    /// until the commit and the new one after it. Refuses to replace a table of the same name that this service did not
    /// create. Returns the table as the API shows it.</summary>
    public static async Task<WarehouseTable> SwapInAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string staging, string name, Guid schemaId, CancellationToken ct, long? rows = null)
    {
        await IsOursAsync(connection, transaction, schema, name, schemaId, ct);

        await ExecuteAsync(connection, transaction, $"""
            DROP TABLE IF EXISTS {Quote(schema)}.{Quote(name)};
            ALTER TABLE {Quote(schema)}.{Quote(staging)} RENAME TO {Quote(name)};
            COMMENT ON TABLE {Quote(schema)}.{Quote(name)} IS '{OwnerMark}{schemaId}';
            """, ct);
        return await DescribeAsync(connection, transaction, schema, name, schemaId, ct, rows);
    }

    /// <summary>Checks the schema's table is there and this service's, and follows upstream's changes of shape (SYNC.md §5,
    /// <see cref="WarehouseColumnDrift"/>): adds a new column (nullable), widens a widened one in place, refuses an incompatible
    /// change naming the column; then the unique index a merge needs. False when the table is gone (a user dropped it):
    /// the run loads it anew. Returns what changed, for the job's note.</summary>
    public static async Task<(bool Present, ColumnDriftPlan? Drift)> PrepareTargetAsync(
        NpgsqlConnection connection, string schema, string name, Guid schemaId, TableShape shape, IReadOnlyList<string>? mergeKey, CancellationToken ct)
    {
        await using var transaction = await connection.BeginTransactionAsync(ct);
        if (!await IsOursAsync(connection, transaction, schema, name, schemaId, ct)) return (false, null);
        var drift = WarehouseColumnDrift.Plan(await ColumnsAsync(connection, transaction, schema, name, ct), shape.Columns);
        foreach (var column in drift.Added)
            await ExecuteAsync(connection, transaction, $"ALTER TABLE {Quote(schema)}.{Quote(name)} ADD COLUMN {Quote(column.Name)} {column.Type}", ct);
        foreach (var (column, _, to) in drift.Widened)
            await ExecuteAsync(connection, transaction, $"ALTER TABLE {Quote(schema)}.{Quote(name)} ALTER COLUMN {Quote(column)} TYPE {to}", ct);
        if (mergeKey is not null) await EnsureKeyIndexAsync(connection, transaction, schema, name, schemaId, mergeKey, ct);
        await transaction.CommitAsync(ct);
        return (true, drift);
    }

    /// <summary>The unique index a merge by <paramref name="key"/> needs (SYNC.md §1 Indexes).</summary>
    public static async Task EnsureKeyIndexAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string name, Guid schemaId, IReadOnlyList<string> key, CancellationToken ct)
    {
        try
        {
            await ExecuteAsync(connection, transaction,
                $"CREATE UNIQUE INDEX IF NOT EXISTS {Quote($"ux_{schemaId:N}")} ON {Quote(schema)}.{Quote(name)} ({string.Join(", ", key.Select(Quote))})", ct);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw DuplicateKeys(key);
        }
    }

    /// <summary>A session-private table one batch is copied into before it is merged or appended; emptied at each commit.</summary>
    public static async Task<string> CreateBatchTableAsync(NpgsqlConnection connection, Guid jobId, TableShape shape, CancellationToken ct)
    {
        var batch = $"_batch_{jobId:N}";
        var columns = string.Join(", ", shape.Columns.Select(c => $"{Quote(c.Name)} {c.Type}"));
        await ExecuteAsync(connection, null, $"CREATE TEMP TABLE IF NOT EXISTS {Quote(batch)} ({columns}) ON COMMIT DELETE ROWS", ct);
        return batch;
    }

    public static Task<NpgsqlRawCopyStream> CopyIntoBatchAsync(NpgsqlConnection connection, string batch, TableShape shape, CancellationToken ct) =>
        connection.BeginRawBinaryCopyAsync($"COPY pg_temp.{Quote(batch)} ({string.Join(", ", shape.Columns.Select(c => Quote(c.Name)))}) FROM STDIN (FORMAT BINARY)", ct);

    /// <summary>Merges the batch into the table by <paramref name="key"/>: a new key is inserted, a known one takes the batch's
    /// values. Returns the rows written and how many of them are new to the table (a row inserted has no <c>xmax</c>; one the
    /// conflict updated carries the lock's), so the table's row count follows without counting it. Two rows of one key in a
    /// batch are the source's duplicate keys, not ours to pick from.</summary>
    public static async Task<(long Written, long Inserted)> MergeBatchAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string batch, string schema, string name, TableShape shape, IReadOnlyList<string> key, CancellationToken ct)
    {
        var columns = shape.Columns.Select(c => Quote(c.Name)).ToList();
        var updates = shape.Columns.Where(c => !key.Contains(c.Name)).Select(c => $"{Quote(c.Name)} = EXCLUDED.{Quote(c.Name)}")
            .Append($"{MetadataSyncedAt} = EXCLUDED.{MetadataSyncedAt}");
        var sql = $"""
            WITH merged AS (
                INSERT INTO {Quote(schema)}.{Quote(name)} ({string.Join(", ", columns)}, {MetadataSyncedAt})
                SELECT {string.Join(", ", columns)}, now() FROM pg_temp.{Quote(batch)}
                ON CONFLICT ({string.Join(", ", key.Select(Quote))}) DO UPDATE SET {string.Join(", ", updates)}
                RETURNING xmax::text = '0' AS inserted)
            SELECT count(*), count(*) FILTER (WHERE inserted) FROM merged
            """;
        try
        {
            await using var command = new NpgsqlCommand(sql, connection, transaction);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            return (reader.GetInt64(0), reader.GetInt64(1));
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.CardinalityViolation)
        {
            throw DuplicateKeys(key);
        }
    }

    private static DuplicateKeysException DuplicateKeys(IReadOnlyList<string> key) => DuplicateKeysException.For(key, null);

    public static Task<long> AppendBatchAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string batch, string schema, string name, TableShape shape, CancellationToken ct)
    {
        var columns = string.Join(", ", shape.Columns.Select(c => Quote(c.Name)));
        return ExecuteAsync(connection, transaction,
            $"INSERT INTO {Quote(schema)}.{Quote(name)} ({columns}, {MetadataSyncedAt}) SELECT {columns}, now() FROM pg_temp.{Quote(batch)}", ct);
    }

    /// <summary>The highest value of <paramref name="column"/> in a warehouse table, as text (an append run's next start).</summary>
    public static async Task<string?> MaxAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string table, string column, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT max({Quote(column)})::text FROM {Quote(schema)}.{Quote(table)}", connection, transaction);
        return await command.ExecuteScalarAsync(ct) as string;
    }

    /// <summary>Drops the schema's table if this service created it for the schema (delete_data). False when there was none;
    /// a table of the name that is not ours is refused, never dropped.</summary>
    public static async Task<bool> DropOwnedAsync(NpgsqlConnection connection, string schema, string name, Guid schemaId, CancellationToken ct)
    {
        await using var transaction = await connection.BeginTransactionAsync(ct);
        if (!await IsOursAsync(connection, transaction, schema, name, schemaId, ct)) return false;
        await ExecuteAsync(connection, transaction, $"DROP TABLE {Quote(schema)}.{Quote(name)}", ct);
        await transaction.CommitAsync(ct);
        return true;
    }

    private const string Marks = "_ph_sync_marks";

    /// <summary>Records, in the warehouse's transaction, how far a cursor run of the schema has committed (a separate
    /// warehouse only: there the rows commit before their events).</summary>
    public static async Task SetMarkAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, Guid schemaId, Guid jobId, string field, string watermark, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"""
            INSERT INTO {Qualified(schema, Marks)} (schema_id, job_id, field, watermark, marked_at) VALUES (@schema, @job, @field, @watermark, now())
            ON CONFLICT (schema_id) DO UPDATE SET job_id = EXCLUDED.job_id, field = EXCLUDED.field, watermark = EXCLUDED.watermark, marked_at = EXCLUDED.marked_at
            """, connection, transaction);
        command.Parameters.AddWithValue("schema", schemaId);
        command.Parameters.AddWithValue("job", jobId);
        command.Parameters.AddWithValue("field", field);
        command.Parameters.AddWithValue("watermark", watermark);
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The schema's committed watermark in the warehouse for <paramref name="field"/>, if any.</summary>
    public static async Task<string?> MarkAsync(NpgsqlConnection connection, string schema, Guid schemaId, string? field, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            $"SELECT watermark FROM {Qualified(schema, Marks)} WHERE schema_id = @schema AND field = @field", connection);
        command.Parameters.AddWithValue("schema", schemaId);
        command.Parameters.AddWithValue("field", (object?)field ?? DBNull.Value);
        return await command.ExecuteScalarAsync(ct) as string;
    }

    internal static async Task<bool> IsOursAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string name, Guid schemaId, CancellationToken ct)
    {
        await using var owner = new NpgsqlCommand("SELECT obj_description(to_regclass(@relation), 'pg_class'), to_regclass(@relation) IS NOT NULL", connection, transaction);
        owner.Parameters.AddWithValue("relation", $"{Quote(schema)}.{Quote(name)}");
        await using var reader = await owner.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        if (!reader.GetBoolean(1)) return false;
        var comment = await reader.IsDBNullAsync(0, ct) ? null : reader.GetString(0);
        return comment == OwnerMark + schemaId
            ? true
            : throw new WarehouseConflictException($"The warehouse already has a table {schema}.{name} that this service did not create for this schema; it is left untouched. Rename or drop it, then run again.");
    }

    public static string Qualified(string schema, string table) => $"{Quote(schema)}.{Quote(table)}";

    /// <summary>The table as the API shows it. Its row count is <paramref name="rows"/> when the run knows it (it wrote every row
    /// since the table's last exact count), else counted: on a large table after a merge, the count is a run's slowest statement.</summary>
    public static async Task<WarehouseTable> DescribeAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string name, Guid schemaId, CancellationToken ct, long? rows = null)
    {
        var columns = await ColumnsAsync(connection, transaction, schema, name, ct);
        if (rows is null)
        {
            await using var count = new NpgsqlCommand($"SELECT count(*) FROM {Quote(schema)}.{Quote(name)}", connection, transaction);
            rows = (long)(await count.ExecuteScalarAsync(ct))!;
        }

        return new WarehouseTable(schemaId, schema, name, columns, rows.Value);
    }

    internal static async Task<List<WarehouseTableColumn>> ColumnsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string name, CancellationToken ct)
    {
        var columns = new List<WarehouseTableColumn>();
        await using var command = new NpgsqlCommand("""
            SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
              FROM pg_attribute a WHERE a.attrelid = to_regclass(@relation) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """, connection, transaction);
        command.Parameters.AddWithValue("relation", $"{Quote(schema)}.{Quote(name)}");
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) columns.Add(new WarehouseTableColumn(reader.GetString(0), reader.GetString(1), reader.GetBoolean(2)));
        return columns;
    }

    internal static async Task<long> ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        return await command.ExecuteNonQueryAsync(ct);
    }
}

/// <summary>The warehouse holds something the run may not touch; nothing changes until someone acts.</summary>
public sealed class WarehouseConflictException(string message) : Exception(message);

/// <summary>The source's rows are not unique on the merge key; merging would have to drop some of them silently.</summary>
public sealed class DuplicateKeysException(string message) : Exception(message)
{
    public static DuplicateKeysException For(IReadOnlyList<string> key, long? duplicated) => new(
        $"The source holds more than one row for {(duplicated is { } n ? $"{n} value{(n == 1 ? "" : "s")} of" : "a value of")} the merge key ({string.Join(", ", key)}), so merging would silently drop rows. " +
        "Make the key unique upstream or set primary_key_columns to a unique key, then enable the schema again.");
}
