using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using Wolverine.Http;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Catalogue;

/// <summary>
/// GET external_data_sources/wizard/ (API.md §3 row 13, ref §5.19): the source types this service can really
/// connect, each with its form, capabilities and (for static-endpoint sources) its documented tables. The keys
/// are PostHog's (camelCase), since PostHog's UI and agent tools read this catalogue as they get it.
/// </summary>
public static class GetWizardEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/wizard")]
    [ProducesResponseType<JsonObject>(StatusCodes.Status200OK)]
    public static IResult Get(string? source_type, SourceTypeRegistry registry)
    {
        var catalogue = Catalogue(source_type, registry);
        return catalogue.Problem is { } problem ? Results.Problem(problem) : Results.Content(catalogue.Value!.ToJsonString(), "application/json");
    }

    /// <summary>The catalogue of the registered source types, or PostHog's refusal for unknown names (REST and MCP alike).</summary>
    public static Shared.Checked<JsonObject> Catalogue(string? source_type, SourceTypeRegistry registry)
    {
        var types = registry.All.OrderBy(t => t.Definition.Name, StringComparer.Ordinal).ToList();
        if (!string.IsNullOrWhiteSpace(source_type))
        {
            var wanted = source_type.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
            var unknown = wanted.Where(w => !registry.TryGet(w, out _)).Order(StringComparer.Ordinal).ToList();
            if (unknown.Count > 0)
            {
                return Problems.Validation(
                    $"Unknown source_type(s): {string.Join(", ", unknown)}. Omit source_type to list every available type.", "source_type", "unknown_source_type");
            }

            types = types.Where(t => wanted.Contains(t.Definition.Name)).ToList();
        }

        var catalogue = new JsonObject();
        foreach (var type in types) catalogue[type.Definition.Name] = Describe(type.Definition);
        return catalogue;
    }

    public static JsonObject Describe(SourceTypeDefinition d) => new()
    {
        ["name"] = d.Name,
        ["label"] = d.Label,
        ["category"] = d.Category,
        ["caption"] = d.Caption,
        ["docsUrl"] = d.DocsUrl,
        ["iconPath"] = $"/static/services/{d.Name.ToLowerInvariant()}.png",
        ["featured"] = true,
        ["betaSource"] = false,
        ["unreleasedSource"] = false,
        ["fields"] = new JsonArray(d.Fields.Select(Field).ToArray<JsonNode?>()),
        ["suggestedTables"] = new JsonArray((d.SuggestedTables ?? []).Select(t => (JsonNode?)new JsonObject { ["table"] = t, ["tooltip"] = null }).ToArray()),
        ["supportsColumnSelection"] = d.Capabilities.ColumnSelection,
        ["capabilities"] = new JsonObject
        {
            ["incremental"] = d.Capabilities.Incremental,
            ["append"] = d.Capabilities.Append,
            ["webhooks"] = d.Capabilities.Webhooks,
            ["cdc"] = d.Capabilities.Cdc,
            ["directQuery"] = d.Capabilities.DirectQuery,
            ["columnSelection"] = d.Capabilities.ColumnSelection,
        },
        ["tables"] = new JsonArray((d.DocumentedTables ?? []).Select(t => (JsonNode?)new JsonObject
        {
            ["name"] = t.Name,
            ["label"] = t.Label,
            ["description"] = t.Description,
            ["sync_methods"] = new JsonArray(t.SyncMethods.Select(m => (JsonNode?)m).ToArray()),
            ["incremental_fields"] = new JsonArray(t.IncrementalFields.Select(f => (JsonNode?)f.Label).ToArray()),
            ["primary_keys"] = new JsonArray(t.PrimaryKeys.Select(k => (JsonNode?)k).ToArray()),
        }).ToArray()),
        ["popularityRank"] = null,
    };

    private static JsonNode Field(SourceField field) => field switch
    {
        InputField f => new JsonObject
        {
            ["type"] = f.InputType, ["name"] = f.Name, ["label"] = f.Label, ["required"] = f.Required,
            ["placeholder"] = f.Placeholder ?? "", ["caption"] = f.Caption, ["secret"] = f.IsSecret,
        },
        SelectField f => new JsonObject
        {
            ["type"] = "select", ["name"] = f.Name, ["label"] = f.Label, ["required"] = f.Required, ["defaultValue"] = f.DefaultValue,
            ["options"] = new JsonArray(f.Options.Select(o => (JsonNode?)new JsonObject
            {
                ["label"] = o.Label, ["value"] = o.Value, ["fields"] = new JsonArray(o.Fields.Select(Field).ToArray<JsonNode?>()),
            }).ToArray()),
        },
        SwitchGroupField f => new JsonObject
        {
            ["type"] = "switch-group", ["name"] = f.Name, ["label"] = f.Label, ["default"] = f.Default, ["caption"] = f.Caption,
            ["fields"] = new JsonArray(f.Fields.Select(Field).ToArray<JsonNode?>()),
        },
        SshTunnelField f => new JsonObject { ["type"] = "ssh-tunnel", ["name"] = f.Name, ["label"] = f.Label },
        _ => throw new NotSupportedException(field.GetType().Name),
    };
}
