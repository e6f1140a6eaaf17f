using ExternalData.EventSourced.Infrastructure.Encryption;
using Wolverine;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Credentials.Expiring;

/// <summary>Scheduled by the stash itself for its <see cref="ExpiresAt"/>; durable, so it survives restarts.</summary>
public sealed record ExpireCredentials(Guid CredentialId, DateTimeOffset ExpiresAt);

public static class ExpireCredentialsHandler
{
    /// <summary>A stash still usable at its expiry becomes <see cref="CredentialsExpired"/> and its key is destroyed.
    /// One already used needs nothing. If the message runs early (clocks differ between nodes) it waits again.</summary>
    public static (Events, IMartenOp, object[]) Handle(
        ExpireCredentials message, [WriteAggregate(nameof(ExpireCredentials.CredentialId), Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] CredentialStash? stash,
        TimeProvider clock)
    {
        var now = clock.GetUtcNow();
        if (stash is not { State: CredentialStashState.Usable }) return ([], MartenOps.Nothing(), []);
        if (now < stash.ExpiresAt) return ([], MartenOps.Nothing(), [message.ScheduledAt(stash.ExpiresAt)]);
        return ([new CredentialsExpired(stash.Id, now)], MartenOps.Delete<DataKey>(stash.Id), []);
    }
}
