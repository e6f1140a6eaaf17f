using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using ModelContextProtocol;
using Wolverine;

namespace ExternalData.EventSourced.Mcp;

/// <summary>
/// The MCP channel's gate: the same API key, scopes and project access as REST (ADR 0022), and the caller every
/// use case takes, with channel <c>mcp</c>. Refusals are tool errors carrying REST's texts.
/// </summary>
public sealed class McpCallers(IHttpContextAccessor http, IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json, IEnumerable<UniqueConstraintProblem> constraints)
{
    public JsonSerializerOptions Json => json.Value.SerializerOptions;

    /// <summary>The service's own address as the MCP client reached it (for links it hands out).</summary>
    public string BaseUrl => http.HttpContext is { } c ? $"{c.Request.Scheme}://{c.Request.Host}" : "";

    public Caller For(string projectId, string scope, string tool)
    {
        var context = http.HttpContext ?? throw new McpException("No request context.");
        var user = context.User;
        if (user.Identity?.IsAuthenticated != true) throw new McpException("Authentication credentials were not provided or are invalid.");
        var projects = user.FindAll(ApiKeyClaims.Project).Select(c => c.Value).ToList();
        if (!projects.Contains(ApiKey.AllProjects) && !projects.Contains(projectId)) throw new McpException("Not found.");
        var scopes = user.FindAll(ApiKeyClaims.Scope).Select(c => c.Value).ToHashSet();
        if (!scopes.Contains(scope) && !(scope == Scopes.Read && scopes.Contains(Scopes.Write))) throw new McpException($"API key missing required scope '{scope}'");
        return new Caller(Actor.From(user), projectId, Channel.Mcp, Caller.CorrelationIdOf(context), $"mcp {tool}#{context.TraceIdentifier}");
    }

    /// <summary>Runs a use case for the tool: its answer as text, its problem (or a lost unique-value race, as REST maps
    /// it) as a tool error.</summary>
    public async Task<string> RunAsync<T>(IMessageBus bus, ICommand command, CancellationToken ct) where T : class
    {
        try
        {
            return Answer(await bus.RunAsync<T>(command, ct));
        }
        catch (Exception e) when (UniqueConstraintProblem.Find(e, constraints) is { } problem)
        {
            throw Error(problem);
        }
    }

    /// <summary>A use case's answer as the tool's text, or its problem as a tool error.</summary>
    public string Answer<T>(Checked<T> outcome) where T : class => outcome.Problem is { } problem ? throw Error(problem) : Text(outcome.Value!);

    public string Text(object value) => JsonSerializer.Serialize(value, value.GetType(), Json);

    public static McpException Error(ProblemDetails problem) => new(problem.Extensions.TryGetValue("attr", out var attr) && attr is string field
        ? $"{problem.Detail} (field: {field})"
        : problem.Detail ?? problem.Title ?? "Refused.");

    public static JsonObject Object(JsonElement? element) =>
        element is { ValueKind: JsonValueKind.Object } e ? JsonNode.Parse(e.GetRawText())!.AsObject() : new JsonObject();
}
