using ExternalData.EventSourced.Infrastructure.Encryption;
using JasperFx.Events;
using Marten.Events.Aggregation;

namespace ExternalData.EventSourced.Credentials;

/// <summary>The write model of a stash: what setup and expiry need to judge it. Inline snapshot.</summary>
public sealed class CredentialStash
{
    public Guid Id { get; set; }
    public int Version { get; set; }
    public string SourceType { get; set; } = "";
    public SealedSecrets? Payload { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
    public CredentialStashState State { get; set; } = CredentialStashState.Usable;

    public static CredentialStash Create(CredentialsStashed e) => new()
    {
        Id = e.CredentialId, SourceType = e.SourceType, Payload = e.Payload, ExpiresAt = e.ExpiresAt,
    };

    public void Apply(CredentialsConsumed e)
    {
        State = CredentialStashState.Consumed;
        Payload = null;
    }

    public void Apply(CredentialsExpired e)
    {
        State = CredentialStashState.Expired;
        Payload = null;
    }

    /// <summary>Usable by a setup at <paramref name="now"/>: neither consumed nor expired, whether or not the expiry message has run yet.</summary>
    public bool IsUsableAt(DateTimeOffset now) => State == CredentialStashState.Usable && now < ExpiresAt;
}

public enum CredentialStashState
{
    Usable,
    Consumed,
    Expired,
}

/// <summary>A stash as <c>stored_credentials</c> lists it (ref §4.4, §5.18): metadata only, never the payload.</summary>
public sealed class StoredCredentialSummary
{
    public Guid Id { get; set; }
    public Guid CredentialId { get; set; }
    public string SourceType { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
    public string? CreatedBy { get; set; }
}

/// <summary>Inline, so a stash is listed the moment it is stored, and gone the moment it is used or expires.</summary>
public sealed partial class StoredCredentialSummaryProjection : SingleStreamProjection<StoredCredentialSummary, Guid>
{
    public static StoredCredentialSummary Create(IEvent<CredentialsStashed> @event) => new()
    {
        Id = @event.Data.CredentialId,
        CredentialId = @event.Data.CredentialId,
        SourceType = @event.Data.SourceType,
        CreatedAt = @event.Data.StashedAt,
        ExpiresAt = @event.Data.ExpiresAt,
        CreatedBy = @event.Data.StashedBy.Name,
    };

    public static bool ShouldDelete(CredentialsConsumed e) => true;
    public static bool ShouldDelete(CredentialsExpired e) => true;
}
