using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Sync;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>
/// A schema's <c>row_filters</c> (ref §5.21) as one SQL condition the source evaluates, so rows a user filtered out never
/// leave the source. Each value is a literal cast to its column's type (COPY takes no parameters); a null value with
/// <c>=</c> or <c>!=</c> means IS NULL or IS NOT NULL, as a user means it.
/// </summary>
internal static class PostgresRowFilters
{
    public static string? Where(IReadOnlyList<RowFilter> filters, TableShape table)
    {
        if (filters.Count == 0) return null;
        return string.Join(" AND ", filters.Select(f => Condition(f, table)));
    }

    private static string Condition(RowFilter filter, TableShape table)
    {
        var column = table.Column(filter.Column)
            ?? throw new SourceReadException($"The row filter's column '{filter.Column}' is gone upstream. Update the schema's row_filters.", false, "column_missing");
        var op = filter.Operator.Trim().ToUpperInvariant();
        var left = $"({column.ReadAs})";
        if (filter.Value is null)
            return op switch
            {
                "=" => $"{left} IS NULL",
                "!=" => $"{left} IS NOT NULL",
                _ => throw Invalid(filter, "a null value goes only with = or !="),
            };

        if (op is "IN" or "NOT IN")
        {
            if (filter.Value is not JsonArray values) throw Invalid(filter, $"{op} needs a list value");
            var list = values.Count == 0 ? "NULL" : string.Join(", ", values.Select(v => Value(v, column)));
            return $"{left} {op} ({list})";
        }

        return op is ">" or ">=" or "<" or "<=" or "=" or "!="
            ? $"{left} {(op == "!=" ? "<>" : op)} {Value(filter.Value, column)}"
            : throw Invalid(filter, "the operator is not one of >, >=, <, <=, =, !=, IN, NOT IN");
    }

    private static string Value(JsonNode? value, WarehouseColumn column) => value switch
    {
        null => "NULL",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => $"{PostgresSourceType.Literal(v.GetValue<string>())}::{column.Type}",
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => $"{PostgresSourceType.Literal(v.GetValueKind() == JsonValueKind.True ? "true" : "false")}::{column.Type}",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => $"{PostgresSourceType.Literal(v.ToJsonString())}::{column.Type}",
        _ => $"{PostgresSourceType.Literal(value.ToJsonString())}::{column.Type}",
    };

    private static SourceReadException Invalid(RowFilter filter, string why) =>
        new($"The row filter on '{filter.Column}' cannot be applied: {why}. Update the schema's row_filters.", false, "invalid_row_filter");
}
