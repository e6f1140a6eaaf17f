using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Webhooks;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/{id}/create_webhook/ (API.md §3 row 19, ref §5.9, §12.2), idempotent.</summary>
public sealed record CreateWebhook(Guid SourceId) : ICommand
{
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public string BaseUrl { get; init; } = "";
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

/// <summary>PostHog's answer (ref §5.9 step 7): a provider failure is <c>success: false</c> with 200, not an HTTP error.</summary>
public sealed record WebhookResult(bool Success, string? WebhookUrl, string? Error, IReadOnlyList<string> PendingInputs);

/// <summary>What a registration attempt found and did, ready to record.</summary>
public sealed record WebhookAttempt(string Url, WebhookOutcome<WebhookRegistration> Outcome, SealedSecrets? SealedSecret, IReadOnlyList<SchemaSettingsChange> Switches);

/// <summary>Where providers deliver: <c>ExternalData:PublicBaseUrl</c>, else the address the caller reached us on.</summary>
public sealed class PublicUrls(IConfiguration configuration)
{
    public string WebhookUrl(string requestBase, Guid sourceId) =>
        $"{(configuration["ExternalData:PublicBaseUrl"] is { Length: > 0 } configured ? configured : requestBase).TrimEnd('/')}/public/webhooks/dwh/{sourceId}";
}

public static class WebhookRegistrations
{
    public const string NotSupported = "This source type does not support webhooks";
    public const string NoConfiguration = "Source has no configuration";

    /// <summary>The tables that go real-time: enabled webhook-capable ones, and webhook-only ones (which nothing else
    /// can sync), switched to webhook sync and enabled (ref §12.3).</summary>
    public static IReadOnlyList<SchemaSettingsChange> Switches(IEnumerable<(Guid Id, string Name, DiscoveryFacts Facts, SyncSettings Settings, bool Removed)> schemas) =>
        schemas.Where(s => !s.Removed && s.Facts.SupportsWebhooks && (s.Settings.ShouldSync || s.Facts.WebhookOnly))
            .Select(s => (s, next: s.Settings with { ShouldSync = true, SyncType = SyncTypes.Webhook }))
            .Where(x => x.next != x.s.Settings)
            .Select(x => new SchemaSettingsChange(x.s.Id, x.s.Name, x.next,
                [.. x.s.Settings.ShouldSync ? Array.Empty<string>() : ["should_sync"], .. x.s.Settings.SyncType == SyncTypes.Webhook ? Array.Empty<string>() : ["sync_type"]]))
            .ToList();

    /// <summary>
    /// Registers with the provider for the switching tables (or, if none, every webhook-capable one) and seals a new
    /// secret at once. A new endpoint is deleted again if the use case then fails: its secret would be lost with the
    /// transaction, and an endpoint nobody can verify is worse than none.
    /// </summary>
    public static async Task<WebhookAttempt> AttemptAsync(
        IWebhookProvider provider, JsonObject config, byte[] dataKey, Guid sourceId, string url, IReadOnlyList<SchemaSettingsChange> switches,
        IEnumerable<string> webhookTables, string? knownEndpoint, SecretsCipher cipher, ILogger logger, CancellationToken ct)
    {
        var events = provider.EventsFor(switches.Count > 0 ? switches.Select(s => s.Name) : webhookTables);
        var outcome = await provider.RegisterAsync(config, url, events, knownEndpoint, ct);
        if (outcome.Value is not { } registration) return new WebhookAttempt(url, outcome, null, []);
        if (registration.NewSecret is null) return new WebhookAttempt(url, outcome, null, switches);

        Compensations.OnFailure(async () =>
        {
            var undone = await provider.DeleteAsync(config, url, CancellationToken.None);
            if (undone.Value is null) logger.LogError("Could not delete the webhook endpoint of a change that failed: {Error}", undone.Error);
        });
        var sealedSecret = cipher.Seal(new JsonObject { ["signing_secret"] = registration.NewSecret }, dataKey, sourceId);
        return new WebhookAttempt(url, outcome, sealedSecret, switches);
    }

    /// <summary>The facts of an attempt: registered (and the tables switched), or failed.</summary>
    public static (WebhookResult Result, IReadOnlyList<object> Events) Decide(Guid sourceId, WebhookAttempt attempt, Caller caller, DateTimeOffset now)
    {
        if (attempt.Outcome.Value is not { } r)
        {
            var error = attempt.Outcome.Error ?? "Failed to create webhook automatically";
            return (new WebhookResult(false, null, error, []),
                [new WebhookRegistrationFailed(sourceId, attempt.Url, error, attempt.Outcome.PermissionDenied, caller.Actor, caller.Channel, now)]);
        }

        var events = new List<object>
        {
            new WebhookRegistered(sourceId, attempt.Url, r.EndpointId, r.EnabledEvents, attempt.SealedSecret, r.Reused, r.ReplacedEndpointIds, caller.Actor, caller.Channel, now),
        };
        if (attempt.Switches.Count > 0)
            events.Add(new SchemasBulkUpdated(sourceId, attempt.Switches, attempt.Switches.SelectMany(s => s.ChangedFields).Distinct().Order().ToList(), caller.Actor, caller.Channel, now));
        return (new WebhookResult(true, attempt.Url, null, []), events);
    }
}

public static class CreateWebhookHandler
{
    public static async Task<Checked<WebhookAttempt>> LoadAsync(
        CreateWebhook command, Source? source, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher, PublicUrls urls,
        ILogger<CreateWebhook> logger, CancellationToken ct)
    {
        if (source is null) return Problems.NotFound();
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return stale;
        if (source.JobInputs.Count == 0) return Problems.Validation(WebhookRegistrations.NoConfiguration, null, "no_configuration");
        if (registry.Get(source.SourceType) is not IWebhookProvider provider) return Problems.Validation(WebhookRegistrations.NotSupported, null, "webhooks_not_supported");

        var (config, dataKey) = await StoredConfig.LoadWithKeyAsync(source, session, cipher, ct);
        var schemas = await session.Query<SourceSchema>().Where(s => s.SourceId == source.Id).ToListAsync(ct);
        var switches = WebhookRegistrations.Switches(schemas.Select(s => (s.Id, s.Name, s.Facts.Capabilities, s.Settings, s.Removed)));
        var webhookTables = schemas.Where(s => !s.Removed && s.Facts.Capabilities.SupportsWebhooks).Select(s => s.Name);
        return await WebhookRegistrations.AttemptAsync(provider, config, dataKey!, source.Id, urls.WebhookUrl(command.BaseUrl, source.Id), switches, webhookTables,
            source.Webhook is { Registered: true } w ? w.EndpointId : null, cipher, logger, ct);
    }

    public static (Checked<WebhookResult>, Events) Handle(
        CreateWebhook command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source, Checked<WebhookAttempt> attempt, DateTimeOffset now)
    {
        if (attempt.Problem is { } problem) return (problem, []);
        var (result, events) = WebhookRegistrations.Decide(command.SourceId, attempt.Value!, command.Caller, now);
        return (result, [.. events]);
    }
}

public static class CreateWebhookEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/create_webhook")]
    [ProducesResponseType<WebhookResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<WebhookResult>(new CreateWebhook(id)
        {
            ExpectedVersion = IfMatch.Version(context), BaseUrl = $"{context.Request.Scheme}://{context.Request.Host}", Caller = HttpCaller.From(context, project_id),
        }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
