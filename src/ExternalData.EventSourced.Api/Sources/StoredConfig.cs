using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using Marten;

namespace ExternalData.EventSourced.Sources;

/// <summary>A source's full config: the public part with its secrets unsealed and laid back in.</summary>
public static class StoredConfig
{
    public static async Task<JsonObject> LoadAsync(Source source, IQuerySession session, SecretsCipher cipher, CancellationToken ct) =>
        (await LoadWithKeyAsync(source, session, cipher, ct)).Config;

    /// <summary>The full config and the source's data key (null when it never had secrets), for a change that re-seals.</summary>
    public static async Task<(JsonObject Config, byte[]? DataKey)> LoadWithKeyAsync(Source source, IQuerySession session, SecretsCipher cipher, CancellationToken ct)
    {
        var dataKeyDocument = await session.LoadAsync<DataKey>(source.Id, ct);
        var dataKey = dataKeyDocument is null ? null : cipher.Unwrap(dataKeyDocument);
        var secrets = source.Secrets is not null && dataKey is not null ? cipher.Unseal(source.Secrets, dataKey, source.Id) : new JsonObject();
        return (Combine(source.JobInputs, secrets), dataKey);
    }

    /// <summary>The full config: the public part with the secrets laid back in at their paths.</summary>
    public static JsonObject Combine(JsonObject publicConfig, JsonObject secrets)
    {
        var combined = (JsonObject)publicConfig.DeepClone();
        foreach (var (key, value) in secrets)
        {
            if (value is JsonObject nested && combined[key] is JsonObject block) combined[key] = Combine(block, nested);
            else combined[key] = value?.DeepClone();
        }

        return combined;
    }
}
