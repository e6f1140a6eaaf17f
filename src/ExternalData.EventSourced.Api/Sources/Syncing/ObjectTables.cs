using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Sync;
using Npgsql;
using NpgsqlTypes;
using static ExternalData.EventSourced.Sources.WarehouseTables;

namespace ExternalData.EventSourced.Sources;

/// <summary>An object to land: its state, and whether the source deleted it (then its last state, flagged).</summary>
public sealed record ObjectRow(JsonObject Object, bool Deleted = false, DateTimeOffset? DeletedAt = null);

/// <summary>
/// The warehouse table of an object source's table (SYNC.md §1, §3.5): one column per top-level field the source has
/// returned so far, in the type its first non-null value says; <c>id</c> the merge key; a field whose values disagree
/// on their type (a number one day, an object the next) becomes <c>jsonb</c>, which holds either. Deletions stay as
/// rows flagged <c>_ph_deleted</c>, as CDC's do (ADR 0048). Every statement runs on the run's connection and
/// transaction, so a batch and the events recording it commit together.
/// </summary>
public sealed class ObjectTable
{
    public const string Key = "id";
    private const string Order = "_ph_order";
    private static readonly HashSet<string> Metadata = [MetadataDeleted, MetadataDeletedAt, MetadataSyncedAt];

    private readonly Dictionary<string, string> _columns;

    private ObjectTable(string schema, string name, Dictionary<string, string> columns) => (Schema, Name, _columns) = (schema, name, columns);

    public string Schema { get; }
    public string Name { get; }

    /// <summary>The schema's table, created empty (id, delete marks, synced-at, the unique key index) when missing.</summary>
    public static async Task<ObjectTable> OpenAsync(NpgsqlConnection connection, string schema, string name, Guid schemaId, CancellationToken ct)
    {
        await using var transaction = await connection.BeginTransactionAsync(ct);
        if (!await IsOursAsync(connection, transaction, schema, name, schemaId, ct))
            await ExecuteAsync(connection, transaction, $"""
                CREATE TABLE {Qualified(schema, name)} ({Key} text NOT NULL, {MetadataDeleted} boolean NOT NULL DEFAULT false, {MetadataDeletedAt} timestamptz,
                    {MetadataSyncedAt} timestamptz NOT NULL DEFAULT now());
                COMMENT ON TABLE {Qualified(schema, name)} IS '{OwnerMark}{schemaId}';
                CREATE UNIQUE INDEX {Quote($"ux_{schemaId:N}")} ON {Qualified(schema, name)} ({Key});
                """, ct);
        var table = await DescribeColumnsAsync(connection, transaction, schema, name, ct);
        await transaction.CommitAsync(ct);
        return table;
    }

    /// <summary>A full load's staging table (marked as the schema's, so a later load drops it if this one never ends), or
    /// the one an earlier delivery of the same job left when <paramref name="resume"/>: the load goes on into it.</summary>
    public static async Task<(ObjectTable Table, bool Resumed)> StagingAsync(
        NpgsqlConnection connection, string schema, Guid schemaId, Guid jobId, bool resume, CancellationToken ct)
    {
        var staging = $"_stage_{jobId:N}";
        if (resume && await ExistsAsync(connection, schema, staging, ct))
        {
            await using var existing = await connection.BeginTransactionAsync(ct);
            var kept = await DescribeColumnsAsync(connection, existing, schema, staging, ct);
            await existing.CommitAsync(ct);
            return (kept, true);
        }

        var shape = new TableShape(staging, [new WarehouseColumn(Key, "text", false, Key)], Key, [Key]);
        await CreateStagingAsync(connection, schema, schemaId, jobId, shape, [], ct);
        await ExecuteAsync(connection, null, $"""
            ALTER TABLE {Qualified(schema, staging)} ALTER COLUMN {Key} SET NOT NULL,
                ADD COLUMN {MetadataDeleted} boolean NOT NULL DEFAULT false, ADD COLUMN {MetadataDeletedAt} timestamptz;
            CREATE UNIQUE INDEX {Quote($"ux_{jobId:N}")} ON {Qualified(schema, staging)} ({Key});
            """, ct);
        await using var transaction = await connection.BeginTransactionAsync(ct);
        var table = await DescribeColumnsAsync(connection, transaction, schema, staging, ct);
        await transaction.CommitAsync(ct);
        return (table, false);
    }

    /// <summary>Swaps a full load's staging table in for the schema's table, its key index taking the schema's name.</summary>
    public static async Task<WarehouseTable> SwapInAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, ObjectTable staging, string name, Guid schemaId, Guid jobId, CancellationToken ct)
    {
        var table = await WarehouseTables.SwapInAsync(connection, transaction, staging.Schema, staging.Name, name, schemaId, ct);
        await ExecuteAsync(connection, transaction, $"ALTER INDEX {Qualified(staging.Schema, $"ux_{jobId:N}")} RENAME TO {Quote($"ux_{schemaId:N}")}", ct);
        return table;
    }

    private static async Task<bool> ExistsAsync(NpgsqlConnection connection, string schema, string name, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT to_regclass(@relation) IS NOT NULL", connection);
        command.Parameters.AddWithValue("relation", Qualified(schema, name));
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    private static async Task<ObjectTable> DescribeColumnsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string name, CancellationToken ct) =>
        new(schema, name, (await ColumnsAsync(connection, transaction, schema, name, ct)).Where(c => !Metadata.Contains(c.Name)).ToDictionary(c => c.Name, c => c.Type));

    /// <summary>
    /// Merges <paramref name="rows"/> by <c>id</c>: new fields become columns first, a field whose value no longer fits its
    /// column widens it (integers to numeric, anything else to jsonb); the batch goes through a binary COPY into a
    /// transaction-private table and one INSERT … ON CONFLICT. Of several rows of one id, the last in the list wins.
    /// Returns the rows written.
    /// </summary>
    public async Task<long> MergeAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, IReadOnlyList<ObjectRow> rows, IObjectRead source, CancellationToken ct)
    {
        if (rows.Count == 0) return 0;
        await FollowShapeAsync(connection, transaction, rows, source, ct);

        var columns = _columns.Keys.ToList();
        const string batch = "_ph_objects";
        var definitions = string.Join(", ", columns.Select(c => $"{Quote(c)} {_columns[c]}"));
        await ExecuteAsync(connection, transaction,
            $"CREATE TEMP TABLE {batch} ({definitions}, {MetadataDeleted} boolean NOT NULL, {MetadataDeletedAt} timestamptz, {Order} int NOT NULL) ON COMMIT DROP", ct);
        var copied = string.Join(", ", columns.Select(Quote));
        await using (var importer = await connection.BeginBinaryImportAsync(
            $"COPY pg_temp.{batch} ({copied}, {MetadataDeleted}, {MetadataDeletedAt}, {Order}) FROM STDIN (FORMAT BINARY)", ct))
        {
            for (var i = 0; i < rows.Count; i++)
            {
                await importer.StartRowAsync(ct);
                foreach (var column in columns) await WriteAsync(importer, _columns[column], rows[i].Object[column], ct);
                await importer.WriteAsync(rows[i].Deleted, NpgsqlDbType.Boolean, ct);
                if (rows[i].DeletedAt is { } at) await importer.WriteAsync(at.UtcDateTime, NpgsqlDbType.TimestampTz, ct);
                else await importer.WriteNullAsync(ct);
                await importer.WriteAsync(i, NpgsqlDbType.Integer, ct);
            }

            await importer.CompleteAsync(ct);
        }

        var all = $"{copied}, {MetadataDeleted}, {MetadataDeletedAt}";
        var updates = columns.Where(c => c != Key).Select(Quote).Append(MetadataDeleted).Append(MetadataDeletedAt).Append(MetadataSyncedAt)
            .Select(c => $"{c} = EXCLUDED.{c}");
        return await ExecuteAsync(connection, transaction, $"""
            INSERT INTO {Qualified(Schema, Name)} ({all}, {MetadataSyncedAt})
            SELECT DISTINCT ON ({Key}) {all}, now() FROM pg_temp.{batch} ORDER BY {Key}, {Order} DESC
            ON CONFLICT ({Key}) DO UPDATE SET {string.Join(", ", updates)};
            DROP TABLE pg_temp.{batch}
            """, ct);
    }

    private async Task FollowShapeAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, IReadOnlyList<ObjectRow> rows, IObjectRead source, CancellationToken ct)
    {
        var changes = new Dictionary<string, (string Type, bool Added)>();
        foreach (var row in rows)
            foreach (var (field, value) in row.Object)
            {
                if (value is null || value.GetValueKind() == JsonValueKind.Null || Metadata.Contains(field)) continue;
                var type = source.WarehouseTypeOf(field, value);
                var current = changes.TryGetValue(field, out var planned) ? planned.Type : _columns.GetValueOrDefault(field);
                if (current is null) changes[field] = (type, true);
                else if (!Holds(current, type)) changes[field] = (Widened(current, type), planned.Added || !_columns.ContainsKey(field));
            }

        foreach (var (field, (type, added)) in changes)
        {
            await ExecuteAsync(connection, transaction, added
                ? $"ALTER TABLE {Qualified(Schema, Name)} ADD COLUMN IF NOT EXISTS {Quote(field)} {type}"
                : $"ALTER TABLE {Qualified(Schema, Name)} ALTER COLUMN {Quote(field)} TYPE {type} USING {(type == "jsonb" ? $"to_jsonb({Quote(field)})" : Quote(field))}", ct);
            _columns[field] = type;
        }
    }

    private static bool Holds(string column, string value) => column == value || column == "jsonb" || (column == "numeric" && value == "bigint");

    private static string Widened(string column, string value) => (column, value) switch
    {
        ("bigint", "numeric") => "numeric",
        _ => "jsonb",
    };

    private static async Task WriteAsync(NpgsqlBinaryImporter importer, string type, JsonNode? value, CancellationToken ct)
    {
        if (value is null || value.GetValueKind() == JsonValueKind.Null)
        {
            await importer.WriteNullAsync(ct);
            return;
        }

        switch (type)
        {
            case "text":
                await importer.WriteAsync(value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : value.ToJsonString(), NpgsqlDbType.Text, ct);
                break;
            case "bigint":
                await importer.WriteAsync(value.GetValue<long>(), NpgsqlDbType.Bigint, ct);
                break;
            case "numeric":
                await importer.WriteAsync(value.GetValue<decimal>(), NpgsqlDbType.Numeric, ct);
                break;
            case "boolean":
                await importer.WriteAsync(value.GetValue<bool>(), NpgsqlDbType.Boolean, ct);
                break;
            case "timestamp with time zone":
                await importer.WriteAsync(DateTimeOffset.FromUnixTimeSeconds(value.GetValue<long>()).UtcDateTime, NpgsqlDbType.TimestampTz, ct);
                break;
            default:
                await importer.WriteAsync(value.ToJsonString(), NpgsqlDbType.Jsonb, ct);
                break;
        }
    }
}
