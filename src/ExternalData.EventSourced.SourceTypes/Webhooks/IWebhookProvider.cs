using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.SourceTypes.Webhooks;

/// <summary>
/// A source type whose provider pushes changes to a URL of ours (Stripe): registering that URL, removing it, reading
/// the provider's side, and verifying a delivery. Knows nothing of events; the use cases record what these did.
/// </summary>
public interface IWebhookProvider
{
    /// <summary>The provider events to subscribe for these tables (ref §12.2, §12.5).</summary>
    IReadOnlyList<string> EventsFor(IEnumerable<string> tables);

    /// <summary>The table a delivered object type belongs to (ref §12.5: routing is by object type), or null.</summary>
    string? TableForObjectType(string objectType);

    /// <summary>The object type a table's deliveries carry, or null for a table without webhooks.</summary>
    string? ObjectTypeFor(string table);

    /// <summary>
    /// Makes exactly one provider endpoint point at <paramref name="url"/> with <paramref name="events"/>. An endpoint
    /// with that URL whose id is <paramref name="endpointWithKnownSecret"/> is kept (its events updated if needed);
    /// any other with that URL is replaced, since its secret is not ours. A new endpoint's secret is returned once.
    /// </summary>
    Task<WebhookOutcome<WebhookRegistration>> RegisterAsync(
        JsonObject config, string url, IReadOnlyList<string> events, string? endpointWithKnownSecret, CancellationToken ct);

    /// <summary>Deletes every provider endpoint with <paramref name="url"/>; none there counts as done.</summary>
    Task<WebhookOutcome<WebhookRemoval>> DeleteAsync(JsonObject config, string url, CancellationToken ct);

    /// <summary>The provider's endpoint for <paramref name="url"/>, read live, or a value saying there is none.</summary>
    Task<WebhookOutcome<WebhookEndpointState>> ReadAsync(JsonObject config, string url, CancellationToken ct);

    /// <summary>Checks a delivery's signature over the raw body with the secret, and reads what it is about.</summary>
    /// <summary>The request header that carries the provider's signature of a delivery.</summary>
    string SignatureHeader { get; }

    WebhookVerification Verify(string rawBody, string? signatureHeader, string secret, DateTimeOffset now);
}

public sealed record WebhookRegistration(string EndpointId, string? NewSecret, bool Reused, IReadOnlyList<string> ReplacedEndpointIds, IReadOnlyList<string> EnabledEvents);

public sealed record WebhookRemoval(IReadOnlyList<string> DeletedEndpointIds);

public sealed record WebhookEndpointState(bool Exists, string? EndpointId, string? Url, IReadOnlyList<string> EnabledEvents, string? Status, string? Description, DateTimeOffset? CreatedAt);

/// <summary>A verified delivery (its event id, type and object type), or the reason it was refused, in PostHog's words.</summary>
public sealed record WebhookVerification(bool Valid, string? Error, string? EventId, string? EventType, string? ObjectType)
{
    public static WebhookVerification Refused(string error) => new(false, error, null, null, null);
}

/// <summary>A provider call's result: the value, or the provider's refusal as a sentence for the caller.</summary>
public sealed record WebhookOutcome<T>(T? Value, string? Error = null, bool PermissionDenied = false) where T : class
{
    public static WebhookOutcome<T> Ok(T value) => new(value);
}
