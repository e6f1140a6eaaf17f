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

/// <summary>POST external_data_sources/{id}/delete_webhook/ (API.md §3 row 20, ref §5.10).</summary>
public sealed record DeleteWebhook(Guid SourceId) : ICommand
{
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

public sealed record WebhookDeletionResult(bool Success, bool ExternalDeleted, string? Error);

/// <summary>What deleting found: nothing registered (null <see cref="Url"/>), or the provider's answer.</summary>
public sealed record WebhookDeletion(string? Url, WebhookOutcome<WebhookRemoval>? Outcome);

public static class DeleteWebhookHandler
{
    public static async Task<Checked<WebhookDeletion>> LoadAsync(
        DeleteWebhook command, Source? source, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        if (source is null) return Problems.NotFound();
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return stale;
        if (registry.Get(source.SourceType) is not IWebhookProvider provider) return Problems.Validation(WebhookRegistrations.NotSupported, null, "webhooks_not_supported");

        var inUse = await session.Query<SourceSchema>()
            .Where(s => s.SourceId == source.Id && !s.Removed && s.Settings.ShouldSync && s.Settings.SyncType == SyncTypes.Webhook)
            .Select(s => s.Name).ToListAsync(ct);
        if (inUse.Count > 0)
        {
            return Problems.Validation(
                $"Cannot delete webhook while tables are using webhook sync: {string.Join(", ", inUse.Order(StringComparer.Ordinal))}. Switch them to full refresh, incremental, or disable syncing first.",
                null, "webhook_in_use");
        }

        if (source.Webhook is not { } webhook || source.JobInputs.Count == 0) return new WebhookDeletion(null, null);
        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        return new WebhookDeletion(webhook.Url, await provider.DeleteAsync(config, webhook.Url, ct));
    }

    public static (Checked<WebhookDeletionResult>, Events) Handle(
        DeleteWebhook command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source, Checked<WebhookDeletion> deletion, DateTimeOffset now)
    {
        if (deletion.Problem is { } problem) return (problem, []);
        var d = deletion.Value!;
        if (d.Url is null) return (new WebhookDeletionResult(true, false, null), []);
        var deleted = d.Outcome?.Value is not null;
        var caller = command.Caller;
        return (new WebhookDeletionResult(true, deleted, d.Outcome?.Error),
            [new WebhookDeleted(command.SourceId, d.Url, deleted, d.Outcome?.Error, caller.Actor, caller.Channel, now)]);
    }
}

public static class DeleteWebhookEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/delete_webhook")]
    [ProducesResponseType<WebhookDeletionResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<WebhookDeletionResult>(
            new DeleteWebhook(id) { ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
