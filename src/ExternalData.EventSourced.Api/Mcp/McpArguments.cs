using System.Text.Json;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace ExternalData.EventSourced.Mcp;

/// <summary>
/// Checks a tool call's arguments against the tool's own input schema before the SDK binds them: a missing required
/// argument or one of the wrong type would otherwise fail the binding with the SDK's generic text, which tells an agent
/// nothing it can act on. Unknown arguments pass (a flat config carries its own fields).
/// </summary>
public static class McpArguments
{
    public static McpRequestHandler<CallToolRequestParams, CallToolResult> Check(McpRequestHandler<CallToolRequestParams, CallToolResult> next) =>
        async (context, ct) =>
            context.MatchedPrimitive is McpServerTool tool && Problem(tool.ProtocolTool.InputSchema, context.Params?.Arguments) is { } problem
                ? McpCallers.Refused(problem)
                : await next(context, ct);

    public static string? Problem(JsonElement schema, IDictionary<string, JsonElement>? arguments)
    {
        arguments ??= new Dictionary<string, JsonElement>();
        var properties = schema.TryGetProperty("properties", out var p) && p.ValueKind == JsonValueKind.Object ? p : default;
        if (schema.TryGetProperty("required", out var required) && required.ValueKind == JsonValueKind.Array)
        {
            foreach (var name in required.EnumerateArray().Select(r => r.GetString()!))
            {
                if (!arguments.TryGetValue(name, out var value) || value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
                    return $"Missing required argument '{name}'{DescriptionOf(properties, name)}.";
            }
        }

        if (properties.ValueKind != JsonValueKind.Object) return null;
        foreach (var (name, value) in arguments)
        {
            if (!properties.TryGetProperty(name, out var property) || Accepts(property, value)) continue;
            return $"Invalid argument '{name}': it must be {Expected(property)}{DescriptionOf(properties, name)}.";
        }

        return null;
    }

    private static bool Accepts(JsonElement property, JsonElement value)
    {
        var types = TypesOf(property);
        if (types.Count == 0) return true;
        return types.Any(type => type switch
        {
            "null" => value.ValueKind == JsonValueKind.Null,
            "string" => value.ValueKind == JsonValueKind.String && (!IsUuid(property) || Guid.TryParse(value.GetString(), out _)),
            "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _),
            "number" => value.ValueKind == JsonValueKind.Number,
            "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
            "object" => value.ValueKind == JsonValueKind.Object,
            "array" => value.ValueKind == JsonValueKind.Array,
            _ => true,
        });
    }

    private static string Expected(JsonElement property)
    {
        var words = TypesOf(property).Where(t => t != "null").Select(type => type switch
        {
            "string" when IsUuid(property) => "a UUID string",
            "string" => "a string",
            "integer" => "a whole number",
            "number" => "a number",
            "boolean" => "true or false",
            "object" => "a JSON object",
            "array" => "a list",
            _ => type,
        }).ToList();
        return words.Count == 0 ? "a value" : string.Join(" or ", words);
    }

    private static List<string> TypesOf(JsonElement property) =>
        !property.TryGetProperty("type", out var type) ? []
        : type.ValueKind == JsonValueKind.String ? [type.GetString()!]
        : type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()!).ToList()
        : [];

    private static bool IsUuid(JsonElement property) => property.TryGetProperty("format", out var format) && format.GetString() == "uuid";

    private static string DescriptionOf(JsonElement properties, string name) =>
        properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(name, out var p) && p.TryGetProperty("description", out var d)
            ? $" ({d.GetString()?.TrimEnd('.')})" : "";
}
