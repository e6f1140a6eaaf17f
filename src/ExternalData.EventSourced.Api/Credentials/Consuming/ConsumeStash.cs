using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using JasperFx.Events;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Credentials.Consuming;

/// <summary>A stash a use case is about to spend: locked for the use case's transaction, its values unsealed.</summary>
public sealed record ClaimedStash(IEventStream<CredentialStash> Stream, JsonObject Values);

/// <summary>
/// How another use case spends a stash (ref §8): setup claims it in its gate, then records its consumption in its own
/// transaction. Only this slice judges a stash, unseals it and destroys its key, so a stash's rules live in one place
/// whichever use case spends it.
/// </summary>
public static class StashConsumption
{
    public static string NotFound(string id) => $"Stored credential '{id}' not found or expired";

    /// <summary>The gate: locks the stash for this transaction (so two setups cannot both spend it), judges it and unseals
    /// its values. A stash that is missing, used, expired, or for another source type is refused in PostHog's words.</summary>
    public static async Task<Checked<ClaimedStash>> ClaimAsync(
        JsonNode? credentialId, string sourceType, string attr, IDocumentSession session, SecretsCipher cipher, DateTimeOffset now, CancellationToken ct)
    {
        var text = credentialId is JsonValue v && v.TryGetValue<string>(out var s) ? s : credentialId?.ToJsonString() ?? "null";
        if (!Guid.TryParse(text, out var id)) return Gone(text, attr);

        var stream = await session.Events.FetchForExclusiveWriting<CredentialStash>(id, ct);
        if (stream.Aggregate is not { } stash || !stash.IsUsableAt(now)) return Gone(text, attr);
        if (stash.SourceType != sourceType)
            return Problems.Validation($"Stored credential '{text}' is for '{stash.SourceType}', not '{sourceType}'", attr, "credential_type_mismatch");

        var dataKey = await session.LoadAsync<DataKey>(id, ct);
        if (dataKey is null || stash.Payload is null) return Gone(text, attr);
        return new ClaimedStash(stream, cipher.Unseal(stash.Payload, cipher.Unwrap(dataKey), id));
    }

    /// <summary>The decision: the stash was spent on <paramref name="sourceId"/>, and its key is destroyed, in the
    /// spending use case's transaction. A use case that fails leaves the stash usable.</summary>
    public static IMartenOp[] Consume(ClaimedStash claim, Guid sourceId, Caller caller, DateTimeOffset now) =>
    [
        new AppendToLockedStream<CredentialStash>(claim.Stream, new CredentialsConsumed(claim.Stream.Id, sourceId, caller.Actor, caller.Channel, now)),
        MartenOps.Delete<DataKey>(claim.Stream.Id),
    ];

    private static ProblemDetails Gone(string text, string attr) => Problems.Validation(NotFound(text), attr, "credential_not_found");
}
