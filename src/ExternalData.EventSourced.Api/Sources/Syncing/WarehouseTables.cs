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
    private const string OwnerMark = "externaldata:schema=";
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

    /// <summary>A staging table with the run's columns and <c>_ph_synced_at</c>, in the project's schema.</summary>
    public static async Task<string> CreateStagingAsync(NpgsqlConnection connection, string schema, Guid jobId, TableShape shape, CancellationToken ct)
    {
        var staging = $"_stage_{jobId:N}";
        var columns = string.Join(", ", shape.Columns.Select(c => $"{Quote(c.Name)} {c.Type}"));
        try
        {
            await ExecuteAsync(connection, null, $"CREATE SCHEMA IF NOT EXISTS {Quote(schema)}", ct);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DuplicateSchema)
        {
            // Two runs of one project's first tables raced to create its schema (IF NOT EXISTS is not atomic): it is there.
        }

        await ExecuteAsync(connection, null, $"""
            DROP TABLE IF EXISTS {Quote(schema)}.{Quote(staging)};
            CREATE TABLE {Quote(schema)}.{Quote(staging)} ({columns}{(columns.Length > 0 ? ", " : "")}{MetadataSyncedAt} timestamptz NOT NULL DEFAULT now());
            """, ct);
        return staging;
    }

    /// <summary>Opens a binary COPY of the run's columns into the staging table; <c>_ph_synced_at</c> takes its default.</summary>
    public static Task<NpgsqlRawCopyStream> CopyIntoAsync(NpgsqlConnection connection, string schema, string staging, TableShape shape, CancellationToken ct) =>
        connection.BeginRawBinaryCopyAsync(
            $"COPY {Quote(schema)}.{Quote(staging)} ({string.Join(", ", shape.Columns.Select(c => Quote(c.Name)))}) FROM STDIN (FORMAT BINARY)", ct);

    /// <summary>Swaps the staging table in for the schema's table, in the caller's transaction: readers see the old table
    /// until the commit and the new one after it. Refuses to replace a table of the same name that this service did not
    /// create. Returns the table as the API shows it.</summary>
    public static async Task<WarehouseTable> SwapInAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string staging, string name, Guid schemaId, CancellationToken ct)
    {
        await using (var owner = new NpgsqlCommand(
            "SELECT obj_description(to_regclass(@relation), 'pg_class'), to_regclass(@relation) IS NOT NULL", connection, transaction))
        {
            owner.Parameters.AddWithValue("relation", $"{Quote(schema)}.{Quote(name)}");
            await using var reader = await owner.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            var exists = reader.GetBoolean(1);
            var comment = await reader.IsDBNullAsync(0, ct) ? null : reader.GetString(0);
            if (exists && comment != OwnerMark + schemaId)
                throw new WarehouseConflictException($"The warehouse already has a table {schema}.{name} that this service did not create for this schema; it is left untouched. Rename or drop it, then run again.");
        }

        await ExecuteAsync(connection, transaction, $"""
            DROP TABLE IF EXISTS {Quote(schema)}.{Quote(name)};
            ALTER TABLE {Quote(schema)}.{Quote(staging)} RENAME TO {Quote(name)};
            COMMENT ON TABLE {Quote(schema)}.{Quote(name)} IS '{OwnerMark}{schemaId}';
            """, ct);
        return await DescribeAsync(connection, transaction, schema, name, schemaId, ct);
    }

    public static Task DropStagingAsync(NpgsqlConnection connection, string schema, string staging, CancellationToken ct) =>
        ExecuteAsync(connection, null, $"DROP TABLE IF EXISTS {Quote(schema)}.{Quote(staging)}", ct);

    private static async Task<WarehouseTable> DescribeAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string name, Guid schemaId, CancellationToken ct)
    {
        var columns = new List<WarehouseTableColumn>();
        await using (var command = new NpgsqlCommand("""
            SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
              FROM pg_attribute a WHERE a.attrelid = to_regclass(@relation) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """, connection, transaction))
        {
            command.Parameters.AddWithValue("relation", $"{Quote(schema)}.{Quote(name)}");
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct)) columns.Add(new WarehouseTableColumn(reader.GetString(0), reader.GetString(1), reader.GetBoolean(2)));
        }

        await using var count = new NpgsqlCommand($"SELECT count(*) FROM {Quote(schema)}.{Quote(name)}", connection, transaction);
        var rows = (long)(await count.ExecuteScalarAsync(ct))!;
        return new WarehouseTable(schemaId, schema, name, columns, rows);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(ct);
    }
}

/// <summary>The warehouse holds something the run may not touch; nothing changes until someone acts.</summary>
public sealed class WarehouseConflictException(string message) : Exception(message);
