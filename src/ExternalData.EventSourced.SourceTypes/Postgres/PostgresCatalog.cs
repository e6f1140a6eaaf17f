using ExternalData.EventSourced.SourceTypes.Discovery;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>
/// Reads every table of a database in one round trip of two catalog statements, whatever the table count:
/// a source with thousands of tables must not cost thousands of queries.
/// </summary>
internal static class PostgresCatalog
{
    // Shared by both statements: ordinary/partitioned tables, views, materialised views and foreign tables
    // of one schema, or of every non-system schema when none is given. Partitions are read through their parent.
    private const string RelationFilter = """
        c.relkind IN ('r','p','v','m','f') AND NOT c.relispartition
        AND CASE WHEN @schema::text IS NULL
                 THEN n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
                 ELSE n.nspname = @schema::text END
        """;

    private const string TablesSql = $"""
        SELECT n.nspname, c.relname, c.relkind::text, c.reltuples::bigint, c.relrowsecurity,
               has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AS can_select,
               obj_description(c.oid, 'pg_class'),
               (SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
                  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key,
               (SELECT array_agg(DISTINCT a.attname::text)
                  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = c.oid) AS indexed_leading_columns
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {RelationFilter}
         ORDER BY n.nspname, c.relname
        """;

    private const string ColumnsSql = $"""
        SELECT n.nspname, c.relname, a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, NOT a.attnotnull
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attnum > 0 AND NOT a.attisdropped AND {RelationFilter}
         ORDER BY n.nspname, c.relname, a.attnum
        """;

    private sealed record Relation(string Schema, string Name, string Kind, long RowEstimate, bool RowSecurity, bool CanSelect,
        string? Description, string[]? PrimaryKey, string[]? IndexedLeadingColumns);

    private sealed record Column(string Name, string DataType, string TypeName, bool Nullable);

    public static async Task<IReadOnlyList<DiscoveredTable>> ReadTablesAsync(NpgsqlConnection connection, string? schema, string user, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(new NpgsqlBatchCommand(TablesSql) { Parameters = { new NpgsqlParameter("schema", (object?)schema ?? DBNull.Value) } });
        batch.BatchCommands.Add(new NpgsqlBatchCommand(ColumnsSql) { Parameters = { new NpgsqlParameter("schema", (object?)schema ?? DBNull.Value) } });

        var relations = new List<Relation>();
        var columns = new Dictionary<(string, string), List<Column>>();
        await using (var reader = await batch.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                relations.Add(new Relation(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), reader.GetBoolean(4),
                    // The row is already buffered after ReadAsync; GetValue maps NULL to DBNull, which `as` turns into null.
                    reader.GetBoolean(5), reader.GetValue(6) as string, reader.GetValue(7) as string[], reader.GetValue(8) as string[]));
            }

            await reader.NextResultAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var key = (reader.GetString(0), reader.GetString(1));
                if (!columns.TryGetValue(key, out var list)) columns[key] = list = [];
                list.Add(new Column(reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.GetBoolean(5)));
            }
        }

        return relations.Select(r => ToTable(r, columns.GetValueOrDefault((r.Schema, r.Name)) ?? [], qualify: schema is null, user)).ToList();
    }

    private static DiscoveredTable ToTable(Relation r, List<Column> columns, bool qualify, string user)
    {
        var indexed = new HashSet<string>(r.IndexedLeadingColumns ?? []);
        var candidates = IncrementalFieldRanking.Rank(columns
            .Select(c => (column: c, type: IncrementalTypeOf(c.TypeName)))
            .Where(x => x.type is not null)
            .Select(x => new IncrementalField(x.column.Name, x.type!, x.column.Name, x.type!, x.column.Nullable,
                // Views and foreign tables have no indexes of their own; "unknown" reads as indexed, as PostHog does.
                r.Kind is "r" or "p" or "m" ? indexed.Contains(x.column.Name) : true)));

        IReadOnlyList<string>? primaryKeys = r.PrimaryKey is { Length: > 0 } pk ? pk
            : columns.Any(c => c.Name == "id") ? ["id"] : null;

        var qualifiedName = $"{r.Schema}.{r.Name}";
        return new DiscoveredTable(
            Name: qualify ? qualifiedName : r.Name,
            Label: null,
            Description: r.Description,
            Columns: columns.Select(c => new DiscoveredColumn(c.Name, c.DataType, c.Nullable)).ToList(),
            IncrementalFields: candidates,
            SupportsIncremental: candidates.Count > 0,
            SupportsAppend: candidates.Count > 0,
            SupportsCdc: r.PrimaryKey is { Length: > 0 } && r.Kind is "r" or "p",
            SupportsWebhooks: false,
            WebhookOnly: false,
            RowEstimate: r.RowEstimate >= 0 ? r.RowEstimate : null,
            DetectedPrimaryKeys: primaryKeys,
            PermissionError: r.CanSelect ? null : $"The user '{user}' does not have SELECT permission on table '{qualifiedName}'. Grant it with: GRANT SELECT ON {qualifiedName} TO {user};",
            RlsWarning: r.RowSecurity
                ? $"Row-level security is enabled on '{qualifiedName}': only the rows the user '{user}' may see will be synced. Use a role with BYPASSRLS to sync every row."
                : null);
    }

    private static string? IncrementalTypeOf(string typeName) => typeName switch
    {
        "timestamp" or "timestamptz" => "timestamp",
        "date" => "date",
        "int2" or "int4" or "int8" => "integer",
        "numeric" => "numeric",
        _ => null,
    };
}
