using System.ComponentModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;
using Wolverine;

namespace ExternalData.EventSourced.Mcp;

/// <summary>The schemas viewset's tools under PostHog's names (ref §14, SYNC.md §6), over the use cases and queries its REST
/// routes run, recorded with channel <c>mcp</c>.</summary>
[McpServerToolType]
public sealed class ExternalDataSchemaTools(McpCallers callers, IMessageBus bus, IDocumentStore store, SourceTypeRegistry registry, SecretsCipher cipher)
{
    private const string Project = "The project (environment) id. Optional when the API key reaches one project.";
    private const string Id = "The schema (table) id.";

    [McpServerTool(Name = "external-data-schemas-list", ReadOnly = true),
     Description("List the project's schemas (synced tables) by name, each with its sync settings and status. {count, next, previous, results}.")]
    public Task<CallToolResult> List([Description(Project)] string? project_id = null,
        [Description("Page size, 1-1000 (default 100).")] int? limit = null, [Description("Offset of the page (default 0).")] int? offset = null,
        [Description("Case-insensitive substring of the name.")] string? search = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-schemas-list", async caller =>
        {
            await using var session = store.QuerySession(caller.ProjectId);
            return await SchemaQueries.PageAsync(session, Math.Clamp(limit ?? 100, 1, 1000), Math.Max(0, offset ?? 0), search, ct);
        });

    [McpServerTool(Name = "external-data-schemas-retrieve", ReadOnly = true), Description("Get one schema with its sync status, warehouse table and source.")]
    public Task<CallToolResult> Retrieve([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-schemas-retrieve", async caller =>
        {
            await using var session = store.QuerySession(caller.ProjectId);
            return await SchemaQueries.FindAsync(session, id, ct) is var (schema, source)
                ? SchemaQueries.WithSource(schema, source)
                : throw new ToolRefusal($"Not found: no schema '{id}' in this project (argument 'id').");
        });

    [McpServerTool(Name = "external-data-schemas-partial-update"),
     Description("Change one schema's sync settings by the rules of one bulk_update_schemas entry; arguments left out are kept. Answers the schema with its source.")]
    public Task<CallToolResult> PartialUpdate([Description(Id)] Guid id, [Description(Project)] string? project_id = null,
        [Description("Sync this table.")] bool? should_sync = null,
        [Description("full_refresh, incremental, append, xmin, webhook or cdc.")] string? sync_type = null,
        [Description("The cursor column of incremental and append syncs.")] string? incremental_field = null,
        [Description("The cursor's type: timestamp, date, integer, ...")] string? incremental_field_type = null,
        [Description("Seconds read again before the watermark (date and time cursors).")] int? incremental_field_lookback_seconds = null,
        [Description("5min, 15min, 30min, 1hour, 6hour, 12hour, 24hour, 7day, 30day or never.")] string? sync_frequency = null,
        [Description("HH:MM:SS (UTC) daily and longer frequencies run at.")] string? sync_time_of_day = null,
        [Description("The columns rows are merged on.")] string[]? primary_key_columns = null,
        [Description("Only these columns are synced.")] string[]? enabled_columns = null,
        [Description("[{column, operator, value}] applied at the source.")] JsonElement? row_filters = null,
        [Description("consolidated, cdc_only or both (CDC schemas).")] string? cdc_table_mode = null,
        CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-schemas-partial-update", async caller =>
        {
            // Only what the agent passed: a key left out keeps its value, as a PATCH body that leaves it out does.
            var body = new JsonObject();
            if (should_sync is { } enabled) body["should_sync"] = enabled;
            if (sync_type is not null) body["sync_type"] = sync_type;
            if (incremental_field is not null) body["incremental_field"] = incremental_field;
            if (incremental_field_type is not null) body["incremental_field_type"] = incremental_field_type;
            if (incremental_field_lookback_seconds is { } lookback) body["incremental_field_lookback_seconds"] = lookback;
            if (sync_frequency is not null) body["sync_frequency"] = sync_frequency;
            if (sync_time_of_day is not null) body["sync_time_of_day"] = sync_time_of_day;
            if (primary_key_columns is not null) body["primary_key_columns"] = new JsonArray(primary_key_columns.Select(c => (JsonNode?)c).ToArray());
            if (enabled_columns is not null) body["enabled_columns"] = new JsonArray(enabled_columns.Select(c => (JsonNode?)c).ToArray());
            if (row_filters is { ValueKind: JsonValueKind.Array } filters) body["row_filters"] = JsonNode.Parse(filters.GetRawText());
            if (cdc_table_mode is not null) body["cdc_table_mode"] = cdc_table_mode;
            await using var session = store.QuerySession(caller.ProjectId);
            return McpCallers.Value(await UpdateSchema.RunAsync(bus, session, id, body, caller, null, ct));
        });

    [McpServerTool(Name = "external-data-schemas-reload"), Description("Run one schema now; no second run while one is in progress.")]
    public Task<CallToolResult> Reload([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        Act(id, SchemaSyncAction.Reload, "external-data-schemas-reload", project_id, ct);

    [McpServerTool(Name = "external-data-schemas-resync"), Description("Cancel a running job, forget the watermark and load the whole table again.")]
    public Task<CallToolResult> Resync([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        Act(id, SchemaSyncAction.Resync, "external-data-schemas-resync", project_id, ct);

    [McpServerTool(Name = "external-data-schemas-cancel"), Description("Cancel the schema's running job.")]
    public Task<CallToolResult> Cancel([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        Act(id, SchemaSyncAction.Cancel, "external-data-schemas-cancel", project_id, ct);

    [McpServerTool(Name = "external-data-schemas-delete-data", Destructive = true),
     Description("Drop the schema's warehouse table and reset its sync state; the schema stays, disabled.")]
    public Task<CallToolResult> DeleteData([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        Act(id, SchemaSyncAction.DeleteData, "external-data-schemas-delete-data", project_id, ct);

    [McpServerTool(Name = "external-data-schemas-incremental-fields-create", ReadOnly = true),
     Description("Ask the source now which columns of the schema's table can be a sync cursor, and which sync types it supports.")]
    public Task<CallToolResult> IncrementalFields([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-schemas-incremental-fields-create", async caller =>
        {
            await using var session = store.QuerySession(caller.ProjectId);
            return McpCallers.Value(await IncrementalFieldsProbing.ProbeAsync(session, registry, cipher, id, ct));
        });

    private Task<CallToolResult> Act(Guid id, SchemaSyncAction action, string tool, string? projectId, CancellationToken ct) =>
        callers.CallAsync(projectId, Scopes.Write, tool, caller => callers.RunAsync<SchemaSyncActed>(bus, new ActOnSchemaSync(id, action) { Caller = caller }, ct));
}
