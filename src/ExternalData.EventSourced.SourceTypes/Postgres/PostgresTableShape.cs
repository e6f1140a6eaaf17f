using ExternalData.EventSourced.SourceTypes.Sync;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>
/// A table's columns in the warehouse's types (SYNC.md §2): the same type where the warehouse has it, <c>json</c> as
/// <c>jsonb</c>, enums as <c>text</c>, domains as their base type, composite and any other type as its text form.
/// Arrays keep their element's rule. The source does each cast, so every value's text form is the same on both sides.
/// </summary>
internal static class PostgresTableShape
{
    private static readonly HashSet<string> SameType =
    [
        "smallint", "integer", "bigint", "numeric", "real", "double precision", "text", "character varying", "character", "boolean", "uuid",
        "date", "time without time zone", "time with time zone", "timestamp without time zone", "timestamp with time zone", "interval",
        "bytea", "inet", "cidr", "macaddr", "jsonb",
    ];

    // Orderable single-column keys a run can page on.
    private static readonly HashSet<string> PageableKeys =
        ["smallint", "integer", "bigint", "uuid", "date", "timestamp without time zone", "timestamp with time zone", "text", "character varying"];

    private const string ColumnsSql = """
        SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, t.typtype::text, t.typcategory::text,
               coalesce(et.typtype::text, ''), CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
               coalesce((SELECT bt.typtype::text FROM pg_type bt WHERE bt.oid = t.typbasetype), ''),
               a.attnum = ANY(coalesce((SELECT CASE WHEN array_length(i.indkey::int2[], 1) = 1 THEN i.indkey::int2[] END
                                          FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary), '{}'::int2[])),
               coalesce((SELECT k.ord FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                           WHERE i.indrelid = a.attrelid AND i.indisprimary AND k.attnum = a.attnum), 0)
          FROM pg_attribute a
          JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
         WHERE a.attrelid = to_regclass(@relation) AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum
        """;

    /// <summary>Every column of the table, in the warehouse's types.</summary>
    public static async Task<TableShape> ReadAsync(NpgsqlConnection connection, string schema, string name, string table, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(ColumnsSql, connection);
        command.Parameters.AddWithValue("relation", $"{PostgresSourceType.Quote(schema)}.{PostgresSourceType.Quote(name)}");
        var columns = new List<WarehouseColumn>();
        string? pageColumn = null;
        var primaryKey = new SortedList<int, string>();
        await using (var reader = await PostgresSourceType.Guard(() => command.ExecuteReaderAsync(ct)))
        {
            while (await reader.ReadAsync(ct))
            {
                var column = reader.GetString(0);
                var type = Map(reader.GetString(1), reader.GetString(3), reader.GetString(4), reader.GetString(5), await reader.IsDBNullAsync(6, ct) ? null : reader.GetString(6), reader.GetString(7));
                if (reader.GetBoolean(8) && PageableKeys.Contains(Base(type))) pageColumn = column;
                if (reader.GetInt64(9) is > 0 and var keyPosition) primaryKey.Add((int)keyPosition, column);
                columns.Add(new WarehouseColumn(column, type, reader.GetBoolean(2),
                    type == reader.GetString(1) ? PostgresSourceType.Quote(column) : $"{PostgresSourceType.Quote(column)}::{type}"));
            }
        }

        if (columns.Count == 0)
            throw new SourceReadException($"The table '{table}' is gone upstream, or the source's user can no longer see it. Refresh the source's schemas.", false, "table_missing");
        return new TableShape(table, columns, pageColumn, primaryKey.Values.ToList());
    }

    /// <summary>The columns a schema syncs (<c>enabled_columns</c>; all when none are named). An enabled column gone upstream
    /// fails the run: its data would silently stop.</summary>
    public static TableShape Enabled(TableShape all, IReadOnlyList<string>? enabledColumns)
    {
        if (enabledColumns is not { Count: > 0 }) return all;
        var missing = enabledColumns.Where(c => all.Columns.All(col => col.Name != c)).ToList();
        if (missing.Count > 0)
            throw new SourceReadException($"Enabled columns are gone from '{all.Table}': {string.Join(", ", missing)}. Refresh the source's schemas and update enabled_columns.", false, "column_missing");
        return all with
        {
            Columns = all.Columns.Where(c => enabledColumns.Contains(c.Name)).ToList(),
            PageColumn = all.PageColumn is { } page && enabledColumns.Contains(page) ? page : null,
        };
    }

    /// <summary>The warehouse type of a source column, from its formatted type and its catalog kind.</summary>
    public static string Map(string formatted, string typtype, string category, string elementTyptype, string? domainBase, string domainBaseTyptype)
    {
        if (typtype == "e") return "text";
        if (typtype == "d") return domainBase is null || domainBaseTyptype is "e" or "c" or "d" ? "text" : Map(domainBase, domainBaseTyptype, "", "", null, "");
        if (typtype == "c") return "text";
        if (category == "A")
        {
            if (elementTyptype is "e") return "text[]";
            if (elementTyptype is not "b") return "text";
            var element = formatted[..^2];
            return Base(element) == "json" ? "jsonb[]" : SameType.Contains(Base(element)) ? formatted : "text";
        }

        var name = Base(formatted);
        return name == "json" ? "jsonb" : SameType.Contains(name) ? formatted : "text";
    }

    /// <summary>A formatted type without its modifiers: <c>numeric(18,2)</c> → <c>numeric</c>.</summary>
    private static string Base(string formatted)
    {
        var paren = formatted.IndexOf('(', StringComparison.Ordinal);
        if (paren < 0) return formatted;
        var close = formatted.IndexOf(')', paren);
        return (formatted[..paren] + formatted[(close + 1)..]).Trim();
    }
}
