using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.Sources;

/// <summary>Per-schema rules shared by creation and bulk updates (ref §5.2 step 17, §5.21). Each returns the
/// reason in PostHog's words, or null when the value is fine.</summary>
public static class SchemaRules
{
    public const int MaxLookbackSeconds = 5_184_000;
    public static readonly string[] RowFilterOperators = [">", ">=", "<", "<=", "=", "!=", "IN", "NOT IN"];
    public static readonly string[] Frequencies = ["1min", "5min", "15min", "30min", "1hour", "6hour", "12hour", "24hour", "7day", "30day"];
    public static readonly string[] IncrementalFieldTypes = ["integer", "numeric", "datetime", "date", "timestamp", "objectid", "xid"];
    public static readonly string[] CdcTableModes = ["consolidated", "cdc_only", "both"];

    public static string LookbackReason(string schema) =>
        $"incremental_field_lookback_seconds must be an integer between 0 and {MaxLookbackSeconds} (60 days) for schema '{schema}'.";

    /// <summary>Whole numbers (including whole floats) in range; booleans, strings and fractions are refused.</summary>
    public static int? Lookback(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<double>(out var d)
        && d == Math.Floor(d) && d is >= 0 and <= MaxLookbackSeconds
            ? (int)d
            : null;

    public static bool IsTimeOfDay(string value) =>
        TimeOnly.TryParseExact(value, "HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.None, out _);

    public static string? UnknownColumns(string field, IReadOnlyList<string>? requested, IReadOnlyList<AvailableColumn> columns)
    {
        if (requested is null || columns.Count == 0) return null;
        var unknown = requested.Where(c => columns.All(a => a.Name != c)).ToList();
        return unknown.Count == 0
            ? null
            : $"Unknown columns in {field}: [{string.Join(", ", unknown.Select(u => $"'{u}'"))}]. Run `Pull new schemas` to refresh available columns.";
    }

    public static string? RowFilterError(JsonArray filters, IReadOnlyList<AvailableColumn> columns)
    {
        foreach (var node in filters)
        {
            if (node is not JsonObject filter) return "each filter must be an object with column, operator and value";
            var column = Text(filter, "column");
            var op = Text(filter, "operator")?.ToUpperInvariant();
            if (column is null) return "column is required";
            if (columns.Count > 0 && columns.All(c => c.Name != column)) return $"unknown column '{column}'";
            if (op is null || !RowFilterOperators.Contains(op)) return $"operator must be one of {string.Join(", ", RowFilterOperators)}";
            if (!filter.ContainsKey("value")) return "value is required";
            if (op is "IN" or "NOT IN" && filter["value"] is not JsonArray) return $"{op} needs a list value";
        }

        return null;
    }

    public static string? Text(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue<string>(out var s) && s.Trim().Length > 0 ? s.Trim() : null;

    /// <summary>A list of strings, or null when absent or null; non-string items make it invalid (returns false).</summary>
    public static bool TryStrings(JsonNode? node, out List<string>? values)
    {
        values = null;
        if (node is null) return true;
        if (node is not JsonArray array) return false;
        values = [];
        foreach (var item in array)
        {
            if (item is not JsonValue v || !v.TryGetValue<string>(out var s)) return false;
            values.Add(s);
        }

        return true;
    }
}
