using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// One entry of a bulk update applied to one schema (ref §5.21, the rules that need no sync engine). Pure: the
/// current settings and discovery facts in, the resulting settings or the reason they are refused out. Only keys
/// present in the entry change; an explicit null clears where PostHog allows it.
/// </summary>
public static class SchemaUpdate
{
    private static readonly string[] SyncOnlyKeys =
    [
        "sync_type", "incremental_field", "incremental_field_type", "incremental_field_lookback_seconds", "sync_frequency", "sync_time_of_day",
        "primary_key_columns", "cdc_table_mode", "row_filters",
    ];

    public static (SyncSettings? Result, IReadOnlyList<string> Changed, string? Reason) Apply(SourceSchema schema, JsonObject entry, bool direct, bool cdcEnabled = false)
    {
        var name = schema.Name;
        var facts = schema.Facts.Capabilities;
        var available = schema.Facts.Columns;
        var current = schema.Settings;
        var changed = new List<string>();
        var next = current;

        if (direct && SyncOnlyKeys.Any(entry.ContainsKey))
            return Refuse("sync settings are not available for direct query sources; only should_sync and enabled_columns apply");

        if (entry.TryGetPropertyValue("should_sync", out var shouldSyncNode))
        {
            if (shouldSyncNode is not JsonValue b || b.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
                return Refuse("should_sync must be true or false");
            next = next with { ShouldSync = b.GetValue<bool>() };
        }

        if (entry.TryGetPropertyValue("sync_type", out var syncTypeNode))
        {
            var syncType = Text(syncTypeNode, out var ok);
            if (!ok || syncType is not null && !SyncTypes.All.Contains(syncType)) return Refuse($"\"{syncTypeNode}\" is not a valid choice for sync_type");
            if (SyncTypeRules.Refusal(name, syncType, facts, cdcEnabled) is { } unsupported) return Refuse(unsupported);
            next = next with { SyncType = syncType };
        }

        if (entry.TryGetPropertyValue("incremental_field", out var fieldNode))
        {
            var field = Text(fieldNode, out var ok);
            if (!ok) return Refuse("incremental_field must be a string or null");
            if (field is not null && available.Count > 0 && available.All(c => c.Name != field))
                return Refuse($"unknown incremental field '{field}'");
            next = next with { IncrementalField = field };
        }

        if (entry.TryGetPropertyValue("incremental_field_type", out var fieldTypeNode))
        {
            var fieldType = Text(fieldTypeNode, out var ok);
            if (!ok || fieldType is not null && !SchemaRules.IncrementalFieldTypes.Contains(fieldType))
                return Refuse($"\"{fieldTypeNode}\" is not a valid choice for incremental_field_type");
            next = next with { IncrementalFieldType = fieldType };
        }

        if (entry.TryGetPropertyValue("incremental_field_lookback_seconds", out var lookbackNode))
        {
            if (lookbackNode is null) next = next with { IncrementalFieldLookbackSeconds = null };
            else if (SchemaRules.Lookback(lookbackNode) is { } lookback) next = next with { IncrementalFieldLookbackSeconds = lookback };
            else return Refuse(SchemaRules.LookbackReason(name));
        }

        if (entry.TryGetPropertyValue("sync_frequency", out var frequencyNode))
        {
            var frequency = Text(frequencyNode, out var ok);
            if (frequency == "never") frequency = null;
            if (!ok || frequency is not null && !SchemaRules.Frequencies.Contains(frequency))
                return Refuse($"\"{frequencyNode}\" is not a valid choice for sync_frequency");
            next = next with { SyncFrequency = frequency };
        }

        if (entry.TryGetPropertyValue("sync_time_of_day", out var timeNode))
        {
            var time = Text(timeNode, out var ok);
            if (!ok || time is not null && !SchemaRules.IsTimeOfDay(time)) return Refuse("Invalid sync time of day");
            next = next with { SyncTimeOfDay = time };
        }

        if (entry.TryGetPropertyValue("cdc_table_mode", out var modeNode))
        {
            var mode = Text(modeNode, out var ok);
            if (!ok || mode is not null && !SchemaRules.CdcTableModes.Contains(mode)) return Refuse($"\"{modeNode}\" is not a valid choice for cdc_table_mode");
            next = next with { CdcTableMode = mode };
        }

        if (entry.TryGetPropertyValue("primary_key_columns", out var keysNode))
        {
            if (!SchemaRules.TryStrings(keysNode, out var keys)) return Refuse("primary_key_columns must be a list of column names");
            if (SchemaRules.UnknownColumns("primary_key_columns", keys, available) is { } unknown) return Refuse(unknown);
            next = next with { PrimaryKeyColumns = keys };
        }

        if (entry.TryGetPropertyValue("enabled_columns", out var columnsNode))
        {
            if (!SchemaRules.TryStrings(columnsNode, out var columns)) return Refuse("enabled_columns must be a list of column names");
            if (SchemaRules.UnknownColumns("enabled_columns", columns, available) is { } unknown) return Refuse(unknown);
            next = next with { EnabledColumns = columns };
        }

        if (entry.TryGetPropertyValue("row_filters", out var filtersNode))
        {
            if (filtersNode is not null and not JsonArray) return Refuse("row_filters must be a list");
            if (filtersNode is JsonArray filters && SchemaRules.RowFilterError(filters, available) is { } error)
                return Refuse($"invalid row filter: {error}");
            next = next with { RowFilters = (JsonArray?)filtersNode?.DeepClone() };
        }

        // Rules on the result, whichever keys produced it.
        if (next.SyncType is SyncTypes.Incremental or SyncTypes.Append)
        {
            if (next.IncrementalField is null) return Refuse("Incremental schemas given do not have an incremental field set");
            if (next.IncrementalFieldType is null) return Refuse("Incremental schemas given do not have an incremental field type set");
        }

        if (next.SyncFrequency == "1min" && next.SyncType != SyncTypes.Cdc)
            return Refuse("A 1-minute sync frequency is only available for CDC schemas. The fastest frequency for other sync types is 5 minutes.");
        if (SyncTypeRules.RefusalToEnable(next.ShouldSync, next.SyncType, direct) is { } notSetUp) return Refuse(notSetUp);
        if (next.RowFilters is { Count: > 0 } && next.SyncType == SyncTypes.Cdc) return Refuse("row filters are not available for CDC schemas");

        changed.AddRange(ChangedFields(current, next));
        return (next, changed, null);

        (SyncSettings?, IReadOnlyList<string>, string?) Refuse(string reason) => (null, [], reason);
    }

    private static IEnumerable<string> ChangedFields(SyncSettings a, SyncSettings b)
    {
        if (a.ShouldSync != b.ShouldSync) yield return "should_sync";
        if (a.SyncType != b.SyncType) yield return "sync_type";
        if (a.IncrementalField != b.IncrementalField) yield return "incremental_field";
        if (a.IncrementalFieldType != b.IncrementalFieldType) yield return "incremental_field_type";
        if (a.IncrementalFieldLookbackSeconds != b.IncrementalFieldLookbackSeconds) yield return "incremental_field_lookback_seconds";
        if (a.SyncFrequency != b.SyncFrequency) yield return "sync_frequency";
        if (a.SyncTimeOfDay != b.SyncTimeOfDay) yield return "sync_time_of_day";
        if (a.CdcTableMode != b.CdcTableMode) yield return "cdc_table_mode";
        if (!SameList(a.PrimaryKeyColumns, b.PrimaryKeyColumns)) yield return "primary_key_columns";
        if (!SameList(a.EnabledColumns, b.EnabledColumns)) yield return "enabled_columns";
        if (!JsonNode.DeepEquals(a.RowFilters, b.RowFilters)) yield return "row_filters";
    }

    private static bool SameList(IReadOnlyList<string>? a, IReadOnlyList<string>? b) =>
        a is null ? b is null : b is not null && a.SequenceEqual(b);

    /// <summary>A JSON string or null; anything else is not ok.</summary>
    private static string? Text(JsonNode? node, out bool ok)
    {
        ok = true;
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<string>(out var s)) return s.Trim().Length == 0 ? null : s.Trim();
        ok = false;
        return null;
    }
}
