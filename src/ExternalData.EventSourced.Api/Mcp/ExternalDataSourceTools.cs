using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Credentials.Listing;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;
using Wolverine;

namespace ExternalData.EventSourced.Mcp;

/// <summary>
/// The MCP tools, under PostHog's names and with PostHog's arguments (ref §14): the REST body's and query's own
/// snake_case names (<c>source_type</c>, <c>payload</c>, <c>prefix</c>, <c>id</c>, <c>limit</c>, …). Each runs the same
/// use case or query as its REST endpoint, in-process, with channel <c>mcp</c>; secrets are never returned.
/// <c>project_id</c> is optional where the key reaches one project (see <see cref="McpCallers"/>).
/// </summary>
[McpServerToolType]
public sealed class ExternalDataSourceTools(McpCallers callers, IMessageBus bus, IDocumentStore store, SourceTypeRegistry registry, TimeProvider clock, Infrastructure.Encryption.SecretsCipher cipher)
{
    private const string Project = "The project (environment) id. Optional when the API key reaches one project.";
    private const string Id = "The source id.";

    [McpServerTool(Name = "external-data-sources-list", ReadOnly = true),
     Description("List the project's data warehouse sources, newest first, each with its schemas (tables) and sync settings. {count, next, previous, results} as the REST list.")]
    public Task<CallToolResult> List([Description(Project)] string? project_id = null,
        [Description("Page size, 1-1000 (default 100).")] int? limit = null, [Description("Offset of the page (default 0).")] int? offset = null,
        [Description("Case-insensitive substring of the source type or prefix.")] string? search = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-sources-list", async caller =>
        {
            var (take, skip) = Page(limit, offset);
            await using var session = store.QuerySession(caller.ProjectId);
            var (page, count) = await SourceQueries.PageAsync(session, registry, take, skip, search, ct);
            var results = new List<SourceDetails>(page.Count);
            foreach (var source in page) results.Add(await SourceQueries.WithSchemasAsync(session, source, ct));
            return new Page<SourceDetails>(count, Link(caller, skip + take < count ? skip + take : null, take, search),
                Link(caller, skip > 0 ? Math.Max(0, skip - take) : null, take, search), results);
        });

    [McpServerTool(Name = "external-data-sources-retrieve", ReadOnly = true), Description("Get one data warehouse source with its schemas.")]
    public Task<CallToolResult> Retrieve([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-sources-retrieve", async caller =>
        {
            await using var session = store.QuerySession(caller.ProjectId);
            var source = await SourceQueries.FindAsync(session, registry, id, ct) ?? throw McpCallers.NotFound(id);
            return await SourceQueries.WithSchemasAsync(session, source, ct);
        });

    [McpServerTool(Name = "external-data-sources-create"),
     Description("Create a source from a config that holds its secrets. Prefer data-warehouse-source-connect-link and data-warehouse-source-setup, so secrets never pass through the agent.")]
    public Task<CallToolResult> Create([Description("Source type, e.g. Postgres or Stripe.")] string source_type,
        [Description("The source's config plus 'schemas': [{name, should_sync, sync_type, ...}].")] JsonElement payload,
        [Description(Project)] string? project_id = null, [Description("Table name prefix.")] string? prefix = null,
        [Description("Description.")] string? description = null, [Description("warehouse (default) or direct.")] string? access_method = null,
        [Description("Allow live queries (direct sources).")] bool? direct_query_enabled = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-create", caller =>
            // PostHog's tool always says it came through MCP (ref §14): the body and the metadata both say mcp.
            callers.RunAsync<SourceDetails>(bus, new CreateSource(source_type, McpCallers.Object(payload), prefix, description, access_method, Channel.Mcp, direct_query_enabled)
            {
                Caller = caller,
            }, ct));

    [McpServerTool(Name = "external-data-sources-partial-update"),
     Description("Change a source's description, direct query switch, connection settings (job_inputs; secrets left out are kept) or a direct source's name. Answers the whole source.")]
    public Task<CallToolResult> PartialUpdate([Description(Id)] Guid id, [Description(Project)] string? project_id = null,
        [Description("New description.")] string? description = null, [Description("Allow live queries.")] bool? direct_query_enabled = null,
        [Description("Config keys to change (secrets left out are kept).")] JsonElement? job_inputs = null,
        [Description("A direct source's new name (warehouse prefixes cannot change).")] string? prefix = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-partial-update", async caller =>
        {
            var inputs = job_inputs is { ValueKind: JsonValueKind.Object } ? McpCallers.Object(job_inputs) : null;
            var updated = (SourceDetails)await callers.RunAsync<SourceDetails>(bus, new UpdateSource(prefix, description, direct_query_enabled, inputs, null, null, null)
            {
                SourceId = id, Caller = caller,
            }, ct);
            await using var session = store.QuerySession(caller.ProjectId);
            return await SourceQueries.WithSchemasAsync(session, updated, ct);
        });

    [McpServerTool(Name = "external-data-sources-destroy", Destructive = true), Description("Delete a source. Its history stays readable; its secrets are destroyed.")]
    public Task<CallToolResult> Destroy([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-destroy", caller =>
            callers.RunAsync<SourceRemoved>(bus, new DeleteSource(id) { Caller = caller }, ct));

    [McpServerTool(Name = "external-data-sources-refresh-schemas"), Description("Rediscover a source's tables and reconcile its schemas; names columns that appeared or vanished.")]
    public Task<CallToolResult> RefreshSchemas([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-refresh-schemas", caller =>
            callers.RunAsync<SchemasRefreshResult>(bus, new RefreshSchemas(id) { Caller = caller }, ct));

    [McpServerTool(Name = "external-data-sources-reload"),
     Description("Run every enabled table of a source now (a full refresh each); a table already running is left to finish. Answers the started job ids; follow them with the source's jobs.")]
    public Task<CallToolResult> Reload([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-reload", caller =>
            callers.RunAsync<SyncRunsStarted>(bus, new ReloadSource(id) { Caller = caller }, ct));

    [McpServerTool(Name = "data-warehouse-source-setup"),
     Description("Set up a source in one call with sensible defaults. Pass payload {\"credential_id\": ...} from data-warehouse-stored-credentials-list; never pass secrets.")]
    public Task<CallToolResult> Setup([Description("Source type, e.g. Postgres.")] string source_type,
        [Description("Usually just {\"credential_id\": \"...\"}.")] JsonElement payload, [Description(Project)] string? project_id = null,
        [Description("Table name prefix.")] string? prefix = null, [Description("Description.")] string? description = null,
        [Description("Only these tables are enabled; the rest are recorded disabled.")] string[]? tables = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "data-warehouse-source-setup", caller =>
            callers.RunAsync<SetUpSourceResult>(bus, new SetUpSource(source_type, McpCallers.Object(payload), prefix, description, null,
                tables is null ? null : new JsonArray(tables.Select(t => (JsonNode?)t).ToArray()))
            {
                Caller = caller, BaseUrl = callers.BaseUrl,
            }, ct));

    [McpServerTool(Name = "data-warehouse-source-connect-link"),
     Description("Get a single-use link for the person who owns the credentials to enter them in their browser. Never ask for secrets in the chat.")]
    public Task<CallToolResult> ConnectLink([Description("Source type, e.g. Postgres.")] string source_type, [Description(Project)] string? project_id = null,
        CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "data-warehouse-source-connect-link", caller =>
            callers.RunAsync<ConnectLinkAnswer>(bus, new IssueConnectLink(source_type) { Caller = caller, BaseUrl = callers.BaseUrl }, ct));

    [McpServerTool(Name = "data-warehouse-stored-credentials-list", ReadOnly = true), Description("The project's usable stored credentials (metadata only), newest first.")]
    public Task<CallToolResult> StoredCredentials([Description(Project)] string? project_id = null, [Description("Exact source type filter.")] string? source_type = null,
        [Description("Case-insensitive substring of the source type.")] string? search = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "data-warehouse-stored-credentials-list", async caller =>
        {
            await using var session = store.QuerySession(caller.ProjectId);
            return await ListStoredCredentialsEndpoint.QueryAsync(session, source_type, search, clock, ct);
        });

    [McpServerTool(Name = "external-data-sources-history", ReadOnly = true), Description("A source's events in order: who changed what, when and through which channel. Secrets are masked.")]
    public Task<CallToolResult> History([Description(Id)] Guid id, [Description(Project)] string? project_id = null,
        [Description("Page size, 1-1000 (default 100).")] int? limit = null, [Description("Offset of the page.")] int? offset = null,
        [Description("Only events of this type, e.g. source_updated.")] string? type = null,
        [Description("Only events at or after this ISO 8601 time.")] string? since = null, [Description("Only events at or before this ISO 8601 time.")] string? until = null,
        CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-sources-history", async caller =>
        {
            var (take, skip) = Page(limit, offset);
            var (from, to, badTime) = TimeRange.Parse(since, until);
            if (badTime is not null) throw new ToolRefusal(McpCallers.Describe(badTime));
            await using var session = store.QuerySession(caller.ProjectId);
            var page = await SourceHistoryEndpoint.ReadAsync(session, id, take, skip, type, from, to, callers.Json, ct) ?? throw McpCallers.NotFound(id);
            return new { count = page.Total, results = page.Entries };
        });

    [McpServerTool(Name = "external-data-sources-wizard", ReadOnly = true),
     Description("The catalogue of source types this service can connect: their forms (secret fields flagged), capabilities and, for Stripe, its tables.")]
    public Task<CallToolResult> Wizard([Description(Project)] string? project_id = null,
        [Description("Comma-separated source types, e.g. Postgres,Stripe.")] string? source_type = null) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-sources-wizard", _ =>
            Task.FromResult<object>(McpCallers.Value(Catalogue.GetWizardEndpoint.Catalogue(source_type, registry))));

    [McpServerTool(Name = "external-data-sources-connections-list", ReadOnly = true), Description("The project's direct-query sources, for live SQL.")]
    public Task<CallToolResult> Connections([Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-sources-connections-list", async caller =>
        {
            await using var session = store.QuerySession(caller.ProjectId);
            return await ListConnectionsEndpoint.Get(session, ct);
        });

    [McpServerTool(Name = "external-data-sources-create-webhook-create"),
     Description("Register this service's webhook with the provider (Stripe) so webhook-capable tables sync in real time. Safe to repeat: the provider keeps one endpoint.")]
    public Task<CallToolResult> CreateWebhook([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-create-webhook-create", caller =>
            callers.RunAsync<WebhookResult>(bus, new CreateWebhook(id) { Caller = caller, BaseUrl = callers.BaseUrl }, ct));

    [McpServerTool(Name = "external-data-sources-delete-webhook-create", Destructive = true),
     Description("Remove the source's webhook at the provider. Refused while tables use webhook sync.")]
    public Task<CallToolResult> DeleteWebhook([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-delete-webhook-create", caller =>
            callers.RunAsync<WebhookDeletionResult>(bus, new DeleteWebhook(id) { Caller = caller }, ct));

    [McpServerTool(Name = "external-data-sources-webhook-info-retrieve", ReadOnly = true),
     Description("The source's webhook: our side, Stripe's side read live, and the events Stripe's endpoint is missing.")]
    public Task<CallToolResult> WebhookInfo([Description(Id)] Guid id, [Description(Project)] string? project_id = null, CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Read, "external-data-sources-webhook-info-retrieve", async caller =>
        {
            await using var session = store.QuerySession(caller.ProjectId);
            return McpCallers.Value(await WebhookInfoQuery.ReadAsync(id, session, registry, cipher, ct));
        });

    [McpServerTool(Name = "external-data-sources-check-cdc-prerequisites-create", ReadOnly = true),
     Description("Check whether a Postgres database can stream its changes (CDC): every prerequisite with what was seen and the SQL that fixes it. " +
                 "The REST body's flat fields (source_type, host, port, database, user, password, schema, ...); prefer source_id, which checks with the stored credentials.")]
    public Task<CallToolResult> CheckCdcPrerequisites(RequestContext<CallToolRequestParams> request, [Description(Project)] string? project_id = null,
        [Description("An existing source to check with its stored credentials instead of a config.")] Guid? source_id = null,
        [Description("Source type of the config, e.g. Postgres.")] string? source_type = null,
        [Description("Tables to check, bare or schema.table.")] string[]? tables = null,
        [Description("posthog (managed, the default) or self_managed.")] string? cdc_management_mode = null,
        [Description("A slot name to check.")] string? cdc_slot_name = null, [Description("A publication name to check.")] string? cdc_publication_name = null,
        CancellationToken ct = default) =>
        callers.CallAsync(project_id, Scopes.Write, "external-data-sources-check-cdc-prerequisites-create", async caller =>
        {
            // The REST body is flat: every argument but the project and the source id is a field of it, named as there.
            var body = new JsonObject();
            foreach (var (name, value) in request.Params?.Arguments ?? new Dictionary<string, JsonElement>())
                if (name is not ("project_id" or "source_id")) body[name] = JsonNode.Parse(value.GetRawText());
            if (source_id is not { } id) return McpCallers.Value(await CdcPrerequisiteChecks.ForConfigAsync(body, registry, ct));
            await using var session = store.QuerySession(caller.ProjectId);
            return McpCallers.Value(await CdcPrerequisiteChecks.ForSourceAsync(id, body, session, registry, cipher, ct));
        });

    private static (int Take, int Skip) Page(int? limit, int? offset)
    {
        if (limit is <= 0) throw new ToolRefusal("Invalid argument 'limit': it must be a whole number from 1 to 1000.");
        if (offset is < 0) throw new ToolRefusal("Invalid argument 'offset': it must be a whole number, 0 or more.");
        return (Math.Min(limit ?? Paging.DefaultLimit, Paging.MaxLimit), offset ?? 0);
    }

    /// <summary>A page link as REST gives it, so an agent can hand it to a script as it is.</summary>
    private string? Link(Caller caller, int? offset, int limit, string? search) => offset is not { } at ? null
        : $"{callers.BaseUrl}/api/projects/{Uri.EscapeDataString(caller.ProjectId)}/external_data_sources/?limit={limit.ToString(CultureInfo.InvariantCulture)}" +
          $"&offset={at.ToString(CultureInfo.InvariantCulture)}" + (string.IsNullOrWhiteSpace(search) ? "" : $"&search={Uri.EscapeDataString(search)}");
}
