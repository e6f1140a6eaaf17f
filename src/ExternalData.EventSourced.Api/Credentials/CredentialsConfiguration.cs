using ExternalData.EventSourced.Credentials.Expiring;
using JasperFx.Events.Projections;
using Marten;
using Wolverine;

namespace ExternalData.EventSourced.Credentials;

public sealed class CredentialsOptions
{
    public const string Section = "ExternalData:Credentials";

    /// <summary>How long a stash stays usable (ref §8: 24 hours).</summary>
    public TimeSpan TimeToLive { get; set; } = TimeSpan.FromHours(24);
}

public static class CredentialsConfiguration
{
    public static StoreOptions ConfigureCredentials(this StoreOptions options)
    {
        options.Projections.Snapshot<CredentialStash>(SnapshotLifecycle.Inline);
        options.Schema.For<CredentialStash>().MultiTenanted();
        options.Projections.Add<StoredCredentialSummaryProjection>(ProjectionLifecycle.Inline);
        options.Schema.For<StoredCredentialSummary>().MultiTenanted().Duplicate(x => x.SourceType).Index(x => x.ExpiresAt);
        return options;
    }

    public static WolverineOptions ConfigureCredentials(this WolverineOptions options)
    {
        // Expiry is a durable scheduled message: it is stored with the stash, in the same transaction, and fires at
        // expires_at even if the service restarted in between (or on another node).
        options.LocalQueueFor<ExpireCredentials>().UseDurableInbox();
        return options;
    }
}
