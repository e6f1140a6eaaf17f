using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>Our inbound URL was registered with the provider: the endpoint, its events, and its signing secret sealed
/// under the source's data key (null when an endpoint whose secret we already hold was reused).</summary>
public sealed record WebhookRegistered(
    Guid SourceId,
    string Url,
    string ProviderEndpointId,
    IReadOnlyList<string> EnabledEvents,
    SealedSecrets? SigningSecret,
    bool Reused,
    IReadOnlyList<string> ReplacedEndpointIds,
    Actor RegisteredBy,
    string RegisteredVia,
    DateTimeOffset RegisteredAt) : IDomainEvent;

/// <summary>The provider refused the registration; polling stays as it was.</summary>
public sealed record WebhookRegistrationFailed(Guid SourceId, string Url, string Error, bool PermissionDenied, Actor AttemptedBy, string AttemptedVia, DateTimeOffset FailedAt) : IDomainEvent;

/// <summary>The webhook was removed: whether the provider's endpoint was deleted, or why not.</summary>
public sealed record WebhookDeleted(Guid SourceId, string Url, bool ProviderDeleted, string? Error, Actor DeletedBy, string DeletedVia, DateTimeOffset DeletedAt) : IDomainEvent;

/// <summary>A source's webhook as the deciders need it.</summary>
public sealed record WebhookState(string Url, string? EndpointId, SealedSecrets? SigningSecret, DateTimeOffset? RegisteredAt, string? LastError)
{
    public bool Registered => EndpointId is not null && SigningSecret is not null;

    public static WebhookState? Apply(WebhookState? current, object e) => e switch
    {
        WebhookRegistered r => new WebhookState(r.Url, r.ProviderEndpointId, r.SigningSecret ?? current?.SigningSecret, r.RegisteredAt, null),
        WebhookRegistrationFailed f => current is { Registered: true } ? current with { LastError = f.Error } : new WebhookState(f.Url, null, null, null, f.Error),
        WebhookDeleted => null,
        _ => current,
    };
}

/// <summary>The source's <c>webhook</c> field (API.md §4).</summary>
public sealed record WebhookSummary(bool Registered, string Url, DateTimeOffset? RegisteredAt, string? LastError)
{
    public static WebhookSummary? Apply(WebhookSummary? current, object e) => e switch
    {
        WebhookRegistered r => new WebhookSummary(true, r.Url, r.RegisteredAt, null),
        WebhookRegistrationFailed f => current is { Registered: true } ? current with { LastError = f.Error } : new WebhookSummary(false, f.Url, null, f.Error),
        WebhookDeleted => null,
        _ => current,
    };
}
