using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// Event shapes the store may hold that the code no longer writes, read as today's events (ADR 0027). Stored events
/// are never rewritten: an upcaster turns the old JSON into the current type as it is read, so the aggregate, every
/// projection (also when rebuilt) and the history see one shape.
/// </summary>
public static class LegacyEvents
{
    /// <summary>
    /// Before ADR 0016, a new source was recorded as <c>source_connected</c>: it listed its table names
    /// (<c>Tables</c>) where <see cref="SourceCreated"/> counts them (its tables follow as their own events), and it
    /// named its actor in two flat fields (<c>CreatedByKey</c>, <c>CreatedByName</c>) where today's has one <c>CreatedBy</c>.
    /// </summary>
    public const string SourceConnected = "source_connected";

    private static readonly JsonSerializerOptions Options = new() { PropertyNameCaseInsensitive = true };

    public static SourceCreated FromSourceConnected(JsonDocument stored)
    {
        var old = JsonNode.Parse(stored.RootElement.GetRawText())!.AsObject();
        var current = new JsonObject();
        foreach (var (key, value) in old)
        {
            switch (key.ToLowerInvariant())
            {
                case "tables":
                    current["TableCount"] = value is JsonArray tables ? tables.Count : 0;
                    break;
                case "createdbykey" or "createdbyname":
                    break;
                default:
                    current[key] = value?.DeepClone();
                    break;
            }
        }

        current["CreatedBy"] = new JsonObject { ["ApiKeyId"] = Find(old, "CreatedByKey")?.DeepClone(), ["Name"] = Find(old, "CreatedByName")?.DeepClone() };
        return current.Deserialize<SourceCreated>(Options) ?? throw new JsonException("source_connected has no body");
    }

    private static JsonNode? Find(JsonObject o, string key) => o.FirstOrDefault(kv => string.Equals(kv.Key, key, StringComparison.OrdinalIgnoreCase)).Value;
}
