using System.Text.Json;
using System.Text.Json.Serialization;

namespace ExternalData.EventSourced.Shared;

/// <summary>The API's JSON: snake_case everywhere, as PostHog's. One definition for responses and for the read
/// models that store API-shaped JSON (the audit feed).</summary>
public static class ApiJson
{
    public static readonly JsonSerializerOptions Options = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    public static JsonSerializerOptions Configure(JsonSerializerOptions options)
    {
        options.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        options.DictionaryKeyPolicy = null;
        options.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        return options;
    }
}
