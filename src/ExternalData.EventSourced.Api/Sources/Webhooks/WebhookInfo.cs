using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Webhooks;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>GET external_data_sources/{id}/webhook_info/ (API.md §3 row 24, ref §12.4): our side, and the
/// provider's read live, with the events we want that its endpoint lacks.</summary>
public static class WebhookInfoEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/{id}/webhook_info")]
    [ProducesResponseType<System.Text.Json.Nodes.JsonObject>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(Guid id, IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        var info = await WebhookInfoQuery.ReadAsync(id, session, registry, cipher, ct);
        return info.Problem is { } problem ? Results.Problem(problem) : Results.Json(info.Value);
    }
}

/// <summary>The webhook_info query, for every channel.</summary>
public static class WebhookInfoQuery
{
    public static async Task<Shared.Checked<object>> ReadAsync(Guid id, IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        var source = await session.LoadAsync<Source>(id, ct);
        if (source is null) return Problems.NotFound();
        if (registry.Get(source.SourceType) is not IWebhookProvider provider)
            return new { supports_webhooks = false, exists = false, webhook_url = (string?)null, schema_mapping = new Dictionary<string, Guid>(), external_status = (object?)null };
        if (source.Webhook is not { } webhook) return new { supports_webhooks = true, exists = false };

        var schemas = await session.Query<SourceSchema>().Where(s => s.SourceId == id && !s.Removed).ToListAsync(ct);
        var mapping = WebhookRouting.Mapping(provider, schemas);
        var wanted = provider.EventsFor(schemas.Where(s => s.Settings is { ShouldSync: true, SyncType: SyncTypes.Webhook }).Select(s => s.Name));
        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        var live = await provider.ReadAsync(config, webhook.Url, ct);
        var external = live.Value is { } state
            ? new { exists = state.Exists, url = state.Url, enabled_events = state.EnabledEvents, status = state.Status, description = state.Description, created_at = state.CreatedAt, error = (string?)null }
            : new { exists = false, url = (string?)null, enabled_events = (IReadOnlyList<string>)[], status = (string?)null, description = (string?)null, created_at = (DateTimeOffset?)null, error = live.Error };
        var missing = live.Value is { Exists: true } s2 && !s2.EnabledEvents.Contains("*") ? wanted.Except(s2.EnabledEvents).ToList() : wanted.ToList();
        return new
        {
            supports_webhooks = true, exists = true, registered = webhook.Registered, webhook_url = webhook.Url, registered_at = webhook.RegisteredAt,
            last_error = webhook.LastError, schema_mapping = mapping, external_status = external, missing_events = missing,
        };
    }
}

public static class WebhookRouting
{
    /// <summary>Provider object type → schema id, for the source's webhook-capable schemas (ref §12.1).</summary>
    public static Dictionary<string, Guid> Mapping(IWebhookProvider provider, IEnumerable<SourceSchema> schemas)
    {
        var byName = schemas.Where(s => s.Facts.Capabilities.SupportsWebhooks).ToDictionary(s => s.Name, s => s.Id, StringComparer.Ordinal);
        return byName.Keys.Select(name => (name, type: provider.ObjectTypeFor(name))).Where(x => x.type is not null)
            .ToDictionary(x => x.type!, x => byName[x.name], StringComparer.Ordinal);
    }
}
