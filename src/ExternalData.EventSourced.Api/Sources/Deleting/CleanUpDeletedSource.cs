using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using ExternalData.EventSourced.SourceTypes.Webhooks;
using Marten;
using Microsoft.Extensions.Options;
using Wolverine;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// Removes what a deleted source left on the customer's side, then shreds its key. Sent by the deletion in its own
/// transaction to a durable local queue, so a process killed in between finishes the job after restart. It carries
/// no secret: the source's config is read back from its stream as it was just before the deletion. Unlike a request
/// command its caller is serialised with it: the clean-up's events name the person whose delete caused them.
/// </summary>
public sealed record CleanUpDeletedSource(Guid SourceId, long DeletedAtVersion, int Attempt, Caller Caller) : ICommand;

public sealed class CleanupOptions
{
    public const string Section = "ExternalData:Cleanup";

    /// <summary>The waits between attempts; one more attempt than there are waits. After the last, the SQL to run is
    /// recorded and the key shredded anyway: a key kept forever for a database that never answers is the bigger risk.</summary>
    /// <summary>Null means the default. (A non-null default would be appended to, not replaced by, configured values:
    /// that is how the configuration binder fills arrays.)</summary>
    public double[]? RetryDelaysSeconds { get; set; }

    public IReadOnlyList<double> Delays => RetryDelaysSeconds is { Length: > 0 } configured ? configured : [30, 120, 600, 3600, 21600];
}

public static class DeletedSourceCleanup
{
    /// <summary>Something outside this service goes with the source: a slot we may drop, or a publication we own.</summary>
    public static bool Needed(Source source) => source.Cdc is { } cdc && (cdc.AutoDropSlot || cdc.Managed) || source.Webhook is { EndpointId: not null };
}

public static class CleanUpDeletedSourceHandler
{
    public static async Task<OutgoingMessages> Handle(
        CleanUpDeletedSource message, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher, IOptions<CleanupOptions> options,
        TimeProvider clock, ILogger<CleanUpDeletedSource> logger, CancellationToken ct)
    {
        var id = message.SourceId;
        // A redelivered message (the process died after committing, before acknowledging) finds the work done.
        if (await session.Events.QueryAllRawEvents().Where(e => e.StreamId == id && e.EventTypeName == "source_secrets_shredded").AnyAsync(ct)) return [];

        var source = await session.Events.AggregateStreamAsync<Source>(id, version: message.DeletedAtVersion - 1, token: ct);
        var now = clock.GetUtcNow();
        var (by, via) = (message.Caller.Actor, message.Caller.Channel);
        var next = new OutgoingMessages();

        // The provider's endpoint goes first, once, best effort: a failure is recorded, not retried, since an endpoint
        // whose deliveries now answer 404 harms nothing and Stripe disables it by itself.
        if (source?.Webhook is { EndpointId: not null } webhook && message.Attempt == 1 && registry.Get(source.SourceType) is IWebhookProvider provider)
        {
            var webhookConfig = await StoredConfig.LoadAsync(source, session, cipher, ct);
            var removed = await provider.DeleteAsync(webhookConfig, webhook.Url, ct);
            session.Events.Append(id, new WebhookDeleted(id, webhook.Url, removed.Value is not null, removed.Error, by, via, now));
        }

        if (source?.Cdc is { } cdcSettings && registry.Get(source.SourceType) is IChangeDataCapture cdc)
        {
            var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
            var dropSlot = cdcSettings.AutoDropSlot;
            var outcome = await cdc.RemoveAsync(config, cdcSettings.Resources, dropSlot, cdcSettings.Managed, ct);
            var slot = dropSlot ? cdcSettings.SlotName : null;
            var publication = cdcSettings.Managed ? cdcSettings.PublicationName : null;
            if (outcome.Value is { } removal)
            {
                session.Events.Append(id, new CdcResourcesDropped(id, slot, publication, removal.SlotDropped, removal.PublicationDropped, message.Attempt, by, via, now));
            }
            else
            {
                var error = outcome.Unreachable?.Message ?? outcome.Error ?? "unknown error";
                var delays = options.Value.Delays;
                if (message.Attempt <= delays.Count)
                {
                    var wait = TimeSpan.FromSeconds(delays[message.Attempt - 1]);
                    logger.LogWarning("Clean-up of deleted source {SourceId} failed (attempt {Attempt}): {Error}; retrying in {Wait}", id, message.Attempt, error, wait);
                    session.Events.Append(id, new CdcCleanupAttemptFailed(id, message.Attempt, error, now + wait, by, via, now));
                    next.Add((message with { Attempt = message.Attempt + 1 }).DelayedFor(wait));
                    return next;
                }

                var sql = cdc.RemovalSql(cdcSettings.Resources, dropSlot, cdcSettings.Managed);
                logger.LogError("Gave up cleaning up deleted source {SourceId} after {Attempts} attempts: {Error}. The customer must run: {Sql}", id, message.Attempt, error, sql);
                session.Events.Append(id, new CdcCleanupAbandoned(id, slot, publication, message.Attempt, error, sql, by, via, now));
            }
        }

        session.Delete<DataKey>(id);
        session.Events.Append(id, new SourceSecretsShredded(id, by, via, now));
        return next;
    }
}
