using System.ComponentModel;
using System.Reflection;
using System.Text;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using ModelContextProtocol.Server;

namespace ExternalData.EventSourced.Mcp;

/// <summary>
/// The MCP tools in the API reference (<c>/docs</c>): a tag whose description names each tool and its arguments, read
/// from the tools themselves so the page cannot drift from what <c>tools/list</c> answers.
/// </summary>
public sealed class McpToolsDocument : IOpenApiDocumentTransformer
{
    public const string Tag = "MCP tools";

    public Task TransformAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken ct)
    {
        document.Tags ??= new HashSet<OpenApiTag>();
        document.Tags.Add(new OpenApiTag { Name = Tag, Description = Describe() });
        return Task.CompletedTask;
    }

    public static string Describe()
    {
        var text = new StringBuilder("""
            ## MCP tools (`POST /mcp`)
            Streamable HTTP, the same bearer API keys and scopes as the REST routes. The tools have PostHog's names and take PostHog's
            arguments: the REST body's and query's own snake_case names. `project_id` is optional when the key reaches one project.
            Every refusal is a tool error that names the argument, the scope or what was not found.

            | Tool | Arguments (**required**) | What it does |
            |---|---|---|

            """);
        foreach (var method in new[] { typeof(ExternalDataSourceTools), typeof(ExternalDataSchemaTools) }.SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Instance)))
        {
            if (method.GetCustomAttribute<McpServerToolAttribute>() is not { Name: { } name }) continue;
            var arguments = method.GetParameters()
                .Where(p => p.ParameterType != typeof(CancellationToken)
                            && !(p.ParameterType.IsGenericType && p.ParameterType.GetGenericTypeDefinition() == typeof(ModelContextProtocol.Server.RequestContext<>)))
                .Select(p => p.HasDefaultValue ? $"`{p.Name}`" : $"**`{p.Name}`**");
            text.Append($"| `{name}` | {string.Join(", ", arguments)} | {method.GetCustomAttribute<DescriptionAttribute>()?.Description} |\n");
        }

        return text.ToString();
    }
}
