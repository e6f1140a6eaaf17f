using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes.Discovery;
using Microsoft.AspNetCore.Mvc;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>A table about to become a schema of a new source: its id, what discovery saw, and its starting settings.</summary>
public sealed record NewSchema(Guid Id, string Name, TableFacts Facts, SyncSettings Settings)
{
    public SchemaDetails ToDetails() => SchemaDetails.From(Id, Name, Facts, Settings);
}

/// <summary>
/// Turns the <c>payload.schemas</c> of a create request and the discovered tables into each table's sync
/// settings (ref §5.2 steps 12–17). Pure: the discovery already happened, so this is easy to test exhaustively.
/// Every discovered table gets a schema; the ones the caller did not name start disabled and unset.
/// </summary>
public static class SchemaSelection
{
    public const string DefaultFrequency = "6hour";

    public static (IReadOnlyList<NewSchema>? Schemas, ProblemDetails? Problem) Build(
        JsonNode? requested, IReadOnlyList<DiscoveredTable> discovered, bool direct, bool cdcEnabled, Func<Guid> newId)
    {
        if (requested is not JsonArray entries || entries.Count == 0)
            return Fail("Schemas not given", "schemas_not_given");

        var parsed = new List<RequestedSchema>();
        foreach (var entry in entries)
        {
            var (schema, problem) = Parse(entry);
            if (problem is not null) return (null, problem);
            parsed.Add(schema!);
        }

        var byName = discovered.ToDictionary(t => t.Name, StringComparer.Ordinal);
        if (parsed.Any(p => !byName.ContainsKey(p.Name)))
            return Fail("Schemas given do not exist in source", "schemas_not_in_source");

        var cdcRequested = parsed.Where(p => p.SyncType == SyncTypes.Cdc && p.ShouldSync).Select(p => p.Name).Order(StringComparer.Ordinal).ToList();
        if (!cdcEnabled && cdcRequested.Count > 0)
        {
            return Fail($"CDC must be enabled on the source before selecting it as a sync type. The following schemas requested CDC: {string.Join(", ", cdcRequested)}.",
                "cdc_not_enabled");
        }

        var withoutKey = cdcRequested.Where(name => !byName[name].SupportsCdc).ToList();
        if (withoutKey.Count > 0)
        {
            return Fail($"CDC requires a primary key on each table. The following tables have no primary key: {string.Join(", ", withoutKey)}.",
                "cdc_primary_key_missing");
        }

        var settings = new List<NewSchema>();
        foreach (var entry in parsed)
        {
            var table = byName[entry.Name];
            var problem = CheckEntry(entry, table, direct, cdcEnabled);
            if (problem is not null) return (null, problem);
            settings.Add(ToSettings(entry, table, direct, newId()));
        }

        var named = parsed.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        settings.AddRange(discovered.Where(t => !named.Contains(t.Name))
            .Select(t => ToSettings(new RequestedSchema(t.Name, false, null, null, null, null, null, null, null, null, null), t, direct, newId())));
        return (settings, null);
    }

    private static ProblemDetails? CheckEntry(RequestedSchema entry, DiscoveredTable table, bool direct, bool cdcEnabled)
    {
        if (!direct && SyncTypeRules.JudgedAtCreate(entry.ShouldSync)
            && SyncTypeRules.Refusal(table.Name, entry.SyncType, FactsOf(table).Capabilities, cdcEnabled) is { } unsupported)
            return Problems.Validation(SyncTypeRules.AsSentence(unsupported), "payload.schemas", "sync_type_not_supported");

        if (entry.ShouldSync && entry.SyncType is SyncTypes.Incremental or SyncTypes.Append)
        {
            if (string.IsNullOrEmpty(entry.IncrementalField))
                return Problems.Validation("Incremental schemas given do not have an incremental field set", "payload.schemas", "incremental_field_missing");
            if (string.IsNullOrEmpty(entry.IncrementalFieldType))
                return Problems.Validation("Incremental schemas given do not have an incremental field type set", "payload.schemas", "incremental_field_type_missing");
        }

        if (entry.RowFilters is { Count: > 0 } filters)
        {
            if (direct)
                return Problems.Validation($"Row filter not allowed for schema '{entry.Name}': row filters are not available for direct query sources.", "payload.schemas", "row_filter_not_allowed");
            if (entry.SyncType == SyncTypes.Cdc)
                return Problems.Validation($"Row filter not allowed for schema '{entry.Name}': CDC streams every change, so it cannot be filtered.", "payload.schemas", "row_filter_not_allowed");
            var error = SchemaRules.RowFilterError(filters, Columns(table));
            if (error is not null)
                return Problems.Validation($"Invalid row filter for schema '{entry.Name}': {error}", "payload.schemas", "invalid_row_filter");
        }

        if (!direct && entry.SyncType is SyncTypes.Incremental or SyncTypes.Append && entry.LookbackProvided && entry.LookbackSeconds is null)
        {
            return Problems.Validation(SchemaRules.LookbackReason(entry.Name), "payload.schemas", "invalid_lookback");
        }

        var columns = Columns(table);
        if (SchemaRules.UnknownColumns("enabled_columns", entry.EnabledColumns, columns) is { } unknownColumns)
            return Problems.Validation(unknownColumns, "payload.schemas", "unknown_columns");
        if (SchemaRules.UnknownColumns("primary_key_columns", entry.PrimaryKeyColumns, columns) is { } unknownKeys)
            return Problems.Validation(unknownKeys, "payload.schemas", "unknown_columns");
        if (entry.IncrementalField is { } field && columns.Count > 0 && columns.All(c => c.Name != field))
            return Problems.Validation($"Unknown incremental field '{field}' for schema '{entry.Name}'.", "payload.schemas", "unknown_incremental_field");

        return null;
    }

    private static IReadOnlyList<AvailableColumn> Columns(DiscoveredTable table) =>
        table.Columns.Select(c => new AvailableColumn(c.Name, c.DataType, c.IsNullable)).ToList();

    public static TableFacts FactsOf(DiscoveredTable table) => new(table.Label, table.Description, Columns(table),
        new DiscoveryFacts(table.SupportsIncremental, table.SupportsAppend, table.SupportsCdc, table.SupportsWebhooks,
            table.WebhookOnly, table.DetectedPrimaryKeys, table.RowEstimate));

    private static NewSchema ToSettings(RequestedSchema entry, DiscoveredTable table, bool direct, Guid id)
    {
        var cursorBased = !direct && entry.SyncType is SyncTypes.Incremental or SyncTypes.Append;
        return new NewSchema(id, table.Name, FactsOf(table), new SyncSettings(
            ShouldSync: entry.ShouldSync,
            SyncType: SyncTypeRules.AtCreate(entry.ShouldSync, entry.SyncType, direct),
            IncrementalField: cursorBased ? entry.IncrementalField : null,
            IncrementalFieldType: cursorBased ? entry.IncrementalFieldType : null,
            IncrementalFieldLookbackSeconds: !direct && entry.SyncType == SyncTypes.Incremental ? entry.LookbackSeconds : null,
            PrimaryKeyColumns: cursorBased ? entry.PrimaryKeyColumns ?? table.DetectedPrimaryKeys : entry.PrimaryKeyColumns,
            SyncFrequency: direct ? null : DefaultFrequency,
            SyncTimeOfDay: direct ? null : entry.SyncTimeOfDay,
            CdcTableMode: entry.CdcTableMode,
            EnabledColumns: entry.EnabledColumns,
            RowFilters: direct ? null : entry.RowFilters));
    }

    private sealed record RequestedSchema(
        string Name, bool ShouldSync, string? SyncType, string? IncrementalField, string? IncrementalFieldType,
        IReadOnlyList<string>? PrimaryKeyColumns, string? SyncTimeOfDay, IReadOnlyList<string>? EnabledColumns, JsonArray? RowFilters,
        string? CdcTableMode, int? LookbackSeconds, bool LookbackProvided = false);

    private static (RequestedSchema? Schema, ProblemDetails? Problem) Parse(JsonNode? node)
    {
        if (node is not JsonObject o || Text(o, "name") is not { Length: > 0 } name)
            return (null, Problems.Validation("Each schema must be an object with a name.", "payload.schemas", "invalid_schema_entry"));

        var syncType = Text(o, "sync_type");
        if (syncType is not null && !SyncTypes.All.Contains(syncType))
            return (null, Problems.Validation($"\"{syncType}\" is not a valid choice for sync_type of schema '{name}'.", "payload.schemas", "invalid_choice"));

        var timeOfDay = Text(o, "sync_time_of_day");
        if (timeOfDay is not null && !SchemaRules.IsTimeOfDay(timeOfDay))
            return (null, Problems.Validation("Invalid sync time of day", "payload.schemas", "invalid_sync_time_of_day"));

        var cdcTableMode = Text(o, "cdc_table_mode");
        if (cdcTableMode is not null && !SchemaRules.CdcTableModes.Contains(cdcTableMode))
            return (null, Problems.Validation($"\"{cdcTableMode}\" is not a valid choice for cdc_table_mode of schema '{name}'.", "payload.schemas", "invalid_choice"));

        // Same shape rules as a bulk update: a wrong type is refused, never silently dropped or coerced.
        var shouldSync = o["should_sync"];
        if (shouldSync is not null && shouldSync.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
            return (null, Problems.Validation($"should_sync of schema '{name}' must be true or false.", "payload.schemas", "invalid"));
        if (!SchemaRules.TryStrings(o["primary_key_columns"], out var primaryKeys))
            return (null, Problems.Validation($"primary_key_columns of schema '{name}' must be a list of column names.", "payload.schemas", "invalid"));
        if (!SchemaRules.TryStrings(o["enabled_columns"], out var enabledColumns))
            return (null, Problems.Validation($"enabled_columns of schema '{name}' must be a list of column names.", "payload.schemas", "invalid"));
        if (o["row_filters"] is { } rowFilters and not JsonArray)
            return (null, Problems.Validation($"row_filters of schema '{name}' must be a list.", "payload.schemas", "invalid"));

        var lookbackProvided = o.TryGetPropertyValue("incremental_field_lookback_seconds", out var lookbackNode) && lookbackNode is not null;
        return (new RequestedSchema(
            name,
            shouldSync?.GetValueKind() == JsonValueKind.True,
            syncType,
            Text(o, "incremental_field"),
            Text(o, "incremental_field_type"),
            primaryKeys,
            timeOfDay,
            enabledColumns,
            o["row_filters"] as JsonArray is { } filters ? (JsonArray)filters.DeepClone() : null,
            cdcTableMode,
            lookbackProvided ? SchemaRules.Lookback(lookbackNode) : null,
            lookbackProvided), null);
    }

    private static string? Text(JsonObject o, string key) => SchemaRules.Text(o, key);

    private static (IReadOnlyList<NewSchema>?, ProblemDetails?) Fail(string message, string code) =>
        (null, Problems.Validation(message, "payload.schemas", code));
}
