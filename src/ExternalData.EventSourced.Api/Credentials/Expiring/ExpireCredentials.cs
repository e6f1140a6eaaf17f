using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using Wolverine;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Credentials.Expiring;

/// <summary>Scheduled by the stash itself for its <see cref="ExpiresAt"/>; durable, so it survives restarts. Messages
/// scheduled before <see cref="ProjectId"/> existed read it as null.</summary>
public sealed record ExpireCredentials(Guid CredentialId, DateTimeOffset ExpiresAt, string? ProjectId = null) : ICommand
{
    public const string Component = "credential-expiry";

    /// <summary>Nobody asked for an expiry: the service itself records it, as <c>system:credential-expiry</c>.</summary>
    [JsonIgnore]
    public Caller Caller => Caller.System(ProjectId ?? "", Component, $"expiry-{CredentialId:N}", $"{Component} {CredentialId}");
}

public static class ExpireCredentialsHandler
{
    /// <summary>A stash still usable at its expiry becomes <see cref="CredentialsExpired"/> and its key is destroyed.
    /// One already used needs nothing. If the message runs early (clocks differ between nodes) it waits again.</summary>
    public static (Events, IMartenOp, object[]) Handle(
        ExpireCredentials message, [WriteAggregate(nameof(ExpireCredentials.CredentialId), Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] CredentialStash? stash,
        DateTimeOffset now)
    {
        if (stash is not { State: CredentialStashState.Usable }) return ([], MartenOps.Nothing(), []);
        if (now < stash.ExpiresAt) return ([], MartenOps.Nothing(), [message.ScheduledAt(stash.ExpiresAt)]);
        return ([new CredentialsExpired(stash.Id, now, message.Caller.Actor, message.Caller.Channel)], MartenOps.Delete<DataKey>(stash.Id), []);
    }
}
