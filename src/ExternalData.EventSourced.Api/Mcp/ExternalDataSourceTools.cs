using System.ComponentModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Credentials.Listing;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using ModelContextProtocol;
using ModelContextProtocol.Server;
using Wolverine;

namespace ExternalData.EventSourced.Mcp;

/// <summary>
/// The MCP tools, under PostHog's names (ref §14). Each calls the same use case or query as its REST endpoint,
/// in-process (no HTTP loop-back), with channel <c>mcp</c>; secrets are never returned.
/// </summary>
[McpServerToolType]
public sealed class ExternalDataSourceTools(McpCallers callers, IMessageBus bus, IDocumentStore store, SourceTypeRegistry registry, TimeProvider clock, Infrastructure.Encryption.SecretsCipher cipher)
{
    private const string Project = "The project (environment) id the sources belong to.";

    [McpServerTool(Name = "external-data-sources-list", ReadOnly = true),
     Description("List the project's data warehouse sources, newest first, each with its schemas (tables) and sync settings.")]
    public async Task<string> List([Description(Project)] string projectId,
        [Description("Page size, 1-1000 (default 100).")] int? limit = null, [Description("Offset of the page.")] int? offset = null,
        [Description("Case-insensitive substring of the source type or prefix.")] string? search = null, CancellationToken ct = default)
    {
        callers.For(projectId, Scopes.Read, "external-data-sources-list");
        await using var session = store.QuerySession(projectId);
        IQueryable<Source> query = session.Query<Source>();
        if (!string.IsNullOrWhiteSpace(search))
        {
            var term = search.Trim();
            query = query.Where(s => s.SourceType.Contains(term, StringComparison.OrdinalIgnoreCase) || (s.Prefix != null && s.Prefix.Contains(term, StringComparison.OrdinalIgnoreCase)));
        }

        var take = Math.Clamp(limit ?? Paging.DefaultLimit, 1, Paging.MaxLimit);
        var page = new List<SourceDetails>();
        foreach (var source in await query.OrderByDescending(s => s.Id).Skip(Math.Max(0, offset ?? 0)).Take(take).ToListAsync(ct))
            page.Add(await WithSchemasAsync(session, source, ct));
        return callers.Text(new { count = page.Count, results = page });
    }

    [McpServerTool(Name = "external-data-sources-retrieve", ReadOnly = true), Description("Get one data warehouse source with its schemas.")]
    public async Task<string> Retrieve([Description(Project)] string projectId, [Description("The source id.")] Guid id, CancellationToken ct = default)
    {
        callers.For(projectId, Scopes.Read, "external-data-sources-retrieve");
        await using var session = store.QuerySession(projectId);
        var source = await session.LoadAsync<Source>(id, ct) ?? throw new McpException("Not found.");
        return callers.Text(await WithSchemasAsync(session, source, ct));
    }

    [McpServerTool(Name = "external-data-sources-create"),
     Description("Create a source from a config that holds its secrets. Prefer data-warehouse-source-connect-link and data-warehouse-source-setup, so secrets never pass through the agent.")]
    public async Task<string> Create([Description(Project)] string projectId, [Description("Source type, e.g. Postgres or Stripe.")] string sourceType,
        [Description("The source's config plus 'schemas': [{name, should_sync, sync_type, ...}].")] JsonElement payload,
        [Description("Table name prefix.")] string? prefix = null, [Description("Description.")] string? description = null, CancellationToken ct = default)
    {
        // PostHog's tool always says it came through MCP (ref §14): the body and the metadata both say mcp.
        var command = new CreateSource(sourceType, McpCallers.Object(payload), prefix, description, null, Channel.Mcp, null)
        {
            Caller = callers.For(projectId, Scopes.Write, "external-data-sources-create"),
        };
        return await callers.RunAsync<SourceDetails>(bus, command, ct);
    }

    [McpServerTool(Name = "external-data-sources-partial-update"), Description("Change a source's description, direct query switch or connection settings.")]
    public async Task<string> PartialUpdate([Description(Project)] string projectId, [Description("The source id.")] Guid id,
        [Description("New description.")] string? description = null, [Description("Allow live queries.")] bool? directQueryEnabled = null,
        [Description("Config keys to change (secrets left out are kept).")] JsonElement? jobInputs = null, CancellationToken ct = default)
    {
        var inputs = jobInputs is { ValueKind: JsonValueKind.Object } ? McpCallers.Object(jobInputs) : null;
        var command = new UpdateSource(null, description, directQueryEnabled, inputs, null, null, null)
        {
            SourceId = id, Caller = callers.For(projectId, Scopes.Write, "external-data-sources-partial-update"),
        };
        return await callers.RunAsync<SourceDetails>(bus, command, ct);
    }

    [McpServerTool(Name = "external-data-sources-destroy", Destructive = true), Description("Delete a source. Its history stays readable; its secrets are destroyed.")]
    public async Task<string> Destroy([Description(Project)] string projectId, [Description("The source id.")] Guid id, CancellationToken ct = default) =>
        await callers.RunAsync<SourceRemoved>(bus, new DeleteSource(id) { Caller = callers.For(projectId, Scopes.Write, "external-data-sources-destroy") }, ct);

    [McpServerTool(Name = "external-data-sources-refresh-schemas"), Description("Rediscover a source's tables and reconcile its schemas; names columns that appeared or vanished.")]
    public async Task<string> RefreshSchemas([Description(Project)] string projectId, [Description("The source id.")] Guid id, CancellationToken ct = default) =>
        await callers.RunAsync<SchemasRefreshResult>(bus, new RefreshSchemas(id) { Caller = callers.For(projectId, Scopes.Write, "external-data-sources-refresh-schemas") }, ct);

    [McpServerTool(Name = "data-warehouse-source-setup"),
     Description("Set up a source in one call with sensible defaults. Pass payload {\"credential_id\": ...} from data-warehouse-stored-credentials-list; never pass secrets.")]
    public async Task<string> Setup([Description(Project)] string projectId, [Description("Source type, e.g. Postgres.")] string sourceType,
        [Description("Usually just {\"credential_id\": \"...\"}.")] JsonElement payload, [Description("Table name prefix.")] string? prefix = null,
        [Description("Only these tables are enabled; the rest are recorded disabled.")] string[]? tables = null, CancellationToken ct = default)
    {
        var command = new SetUpSource(sourceType, McpCallers.Object(payload), prefix, null, null, tables is null ? null : new JsonArray(tables.Select(t => (JsonNode?)t).ToArray()))
        {
            Caller = callers.For(projectId, Scopes.Write, "data-warehouse-source-setup"), BaseUrl = callers.BaseUrl,
        };
        return await callers.RunAsync<SetUpSourceResult>(bus, command, ct);
    }

    [McpServerTool(Name = "data-warehouse-source-connect-link"),
     Description("Get a single-use link for the person who owns the credentials to enter them in their browser. Never ask for secrets in the chat.")]
    public async Task<string> ConnectLink([Description(Project)] string projectId, [Description("Source type, e.g. Postgres.")] string sourceType, CancellationToken ct = default)
    {
        var command = new IssueConnectLink(sourceType) { Caller = callers.For(projectId, Scopes.Read, "data-warehouse-source-connect-link"), BaseUrl = callers.BaseUrl };
        return await callers.RunAsync<ConnectLinkAnswer>(bus, command, ct);
    }

    [McpServerTool(Name = "data-warehouse-stored-credentials-list", ReadOnly = true), Description("The project's usable stored credentials (metadata only), newest first.")]
    public async Task<string> StoredCredentials([Description(Project)] string projectId, [Description("Exact source type filter.")] string? sourceType = null,
        CancellationToken ct = default)
    {
        callers.For(projectId, Scopes.Read, "data-warehouse-stored-credentials-list");
        await using var session = store.QuerySession(projectId);
        return callers.Text(await ListStoredCredentialsEndpoint.QueryAsync(session, sourceType, null, clock, ct));
    }

    [McpServerTool(Name = "external-data-sources-history", ReadOnly = true), Description("A source's events in order: who changed what, when and through which channel. Secrets are masked.")]
    public async Task<string> History([Description(Project)] string projectId, [Description("The source id.")] Guid id,
        [Description("Page size, 1-1000 (default 100).")] int? limit = null, [Description("Offset of the page.")] int? offset = null,
        [Description("Only events of this type, e.g. source_updated.")] string? type = null, CancellationToken ct = default)
    {
        callers.For(projectId, Scopes.Read, "external-data-sources-history");
        await using var session = store.QuerySession(projectId);
        var page = await SourceHistoryEndpoint.ReadAsync(session, id, Math.Clamp(limit ?? Paging.DefaultLimit, 1, Paging.MaxLimit), Math.Max(0, offset ?? 0), type,
            null, null, callers.Json, ct) ?? throw new McpException("Not found.");
        return callers.Text(new { count = page.Total, results = page.Entries });
    }

    [McpServerTool(Name = "external-data-sources-wizard", ReadOnly = true),
     Description("The catalogue of source types this service can connect: their forms (secret fields flagged), capabilities and, for Stripe, its tables.")]
    public string Wizard([Description(Project)] string projectId, [Description("Comma-separated source types, e.g. Postgres,Stripe.")] string? sourceType = null)
    {
        callers.For(projectId, Scopes.Read, "external-data-sources-wizard");
        var catalogue = Catalogue.GetWizardEndpoint.Catalogue(sourceType, registry);
        return catalogue.Problem is { } problem ? throw McpCallers.Error(problem) : catalogue.Value!.ToJsonString();
    }

    [McpServerTool(Name = "external-data-sources-connections-list", ReadOnly = true), Description("The project's direct-query sources, for live SQL.")]
    public async Task<string> Connections([Description(Project)] string projectId, CancellationToken ct = default)
    {
        callers.For(projectId, Scopes.Read, "external-data-sources-connections-list");
        await using var session = store.QuerySession(projectId);
        return callers.Text(await ListConnectionsEndpoint.Get(session, ct));
    }

    [McpServerTool(Name = "external-data-sources-create-webhook-create"),
     Description("Register this service's webhook with the provider (Stripe) so webhook-capable tables sync in real time. Safe to repeat: the provider keeps one endpoint.")]
    public async Task<string> CreateWebhook([Description(Project)] string projectId, [Description("The source id.")] Guid id, CancellationToken ct = default) =>
        await callers.RunAsync<WebhookResult>(bus, new CreateWebhook(id)
        {
            Caller = callers.For(projectId, Scopes.Write, "external-data-sources-create-webhook-create"), BaseUrl = callers.BaseUrl,
        }, ct);

    [McpServerTool(Name = "external-data-sources-delete-webhook-create", Destructive = true),
     Description("Remove the source's webhook at the provider. Refused while tables use webhook sync.")]
    public async Task<string> DeleteWebhook([Description(Project)] string projectId, [Description("The source id.")] Guid id, CancellationToken ct = default) =>
        await callers.RunAsync<WebhookDeletionResult>(bus, new DeleteWebhook(id) { Caller = callers.For(projectId, Scopes.Write, "external-data-sources-delete-webhook-create") }, ct);

    [McpServerTool(Name = "external-data-sources-webhook-info-retrieve", ReadOnly = true),
     Description("The source's webhook: our side, Stripe's side read live, and the events Stripe's endpoint is missing.")]
    public async Task<string> WebhookInfo([Description(Project)] string projectId, [Description("The source id.")] Guid id, CancellationToken ct = default)
    {
        callers.For(projectId, Scopes.Read, "external-data-sources-webhook-info-retrieve");
        await using var session = store.QuerySession(projectId);
        return callers.Answer(await WebhookInfoQuery.ReadAsync(id, session, registry, cipher, ct));
    }

    [McpServerTool(Name = "external-data-sources-check-cdc-prerequisites-create", ReadOnly = true),
     Description("Check whether a Postgres database can stream its changes (CDC): every prerequisite with what was seen and the SQL that fixes it. Prefer a source id (stored credentials) over passing a password.")]
    public async Task<string> CheckCdcPrerequisites([Description(Project)] string projectId,
        [Description("An existing source to check with its stored credentials.")] Guid? sourceId = null,
        [Description("Without a source id: source_type plus the connection fields.")] JsonElement? config = null,
        [Description("Tables to check, bare or schema.table.")] string[]? tables = null,
        [Description("posthog (managed, the default) or self_managed.")] string? cdcManagementMode = null,
        [Description("A slot name to check.")] string? cdcSlotName = null, [Description("A publication name to check.")] string? cdcPublicationName = null,
        CancellationToken ct = default)
    {
        callers.For(projectId, Scopes.Write, "external-data-sources-check-cdc-prerequisites-create");
        var body = config is { ValueKind: JsonValueKind.Object } ? McpCallers.Object(config) : new JsonObject();
        if (tables is not null) body["tables"] = new JsonArray(tables.Select(t => (JsonNode?)t).ToArray());
        if (cdcManagementMode is not null) body["cdc_management_mode"] = cdcManagementMode;
        if (cdcSlotName is not null) body["cdc_slot_name"] = cdcSlotName;
        if (cdcPublicationName is not null) body["cdc_publication_name"] = cdcPublicationName;
        if (sourceId is not { } id) return callers.Answer(await CdcPrerequisiteChecks.ForConfigAsync(body, registry, ct));
        await using var session = store.QuerySession(projectId);
        return callers.Answer(await CdcPrerequisiteChecks.ForSourceAsync(id, body, session, registry, cipher, ct));
    }

    private async Task<SourceDetails> WithSchemasAsync(IQuerySession session, Source stored, CancellationToken ct)
    {
        var source = SourceDetails.Of(stored, registry);
        var schemas = await session.Query<SourceSchema>().Where(s => s.SourceId == source.Id && !s.Removed).OrderBy(s => s.Name).ToListAsync(ct);
        var stats = await WebhookStats.ForSourceAsync(session, source, ct);
        return source.WithSchemas(schemas.Select(s => SchemaDetails.From(s).With(stats)));
    }
}
