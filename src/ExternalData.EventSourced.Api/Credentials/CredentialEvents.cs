using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Credentials;

// The life of one stash of credentials a person entered so an agent can finish a setup without ever seeing them
// (API.md §1.5, ref §8). The stream id is the credential id. The whole config is sealed under the stash's own data
// key; expiry and consumption destroy that key, so the secrets can never be read again from any event.

/// <summary>A person (or a caller) stashed a checked config for one source type, single use, until <see cref="ExpiresAt"/>.</summary>
public sealed record CredentialsStashed(
    Guid CredentialId,
    string ProjectId,
    string SourceType,
    SealedSecrets Payload,
    Actor StashedBy,
    string StashedVia,
    DateTimeOffset StashedAt,
    DateTimeOffset ExpiresAt) : IDomainEvent;

/// <summary>A setup consumed the stash to create <see cref="SourceId"/>; its data key was destroyed with it.</summary>
public sealed record CredentialsConsumed(Guid CredentialId, Guid SourceId, Actor ConsumedBy, string ConsumedVia, DateTimeOffset ConsumedAt) : IDomainEvent;

/// <summary>The stash reached its expiry unused; its data key was destroyed with it. The service records it
/// (<c>system:credential-expiry</c>); expiries recorded before the actor was named read it as null.</summary>
public sealed record CredentialsExpired(Guid CredentialId, DateTimeOffset ExpiredAt, Actor? ExpiredBy = null, string? ExpiredVia = null) : IDomainEvent;
