using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using ModelContextProtocol.Protocol;
using Wolverine;

namespace ExternalData.EventSourced.Mcp;

/// <summary>A tool's refusal, in words an agent can act on: which argument, which scope, what was not found.</summary>
public sealed class ToolRefusal(string message) : Exception(message);

/// <summary>
/// The MCP channel's gate: the same API key, scopes and project access as REST (ADR 0022), and the caller every
/// use case takes, with channel <c>mcp</c>. The project is optional, as in PostHog's tools, whose agent works in its
/// active project: a key that reaches one project acts on it. Every answer, refusals included, is the tool's own
/// result, so an agent reads our words, never only the SDK's generic ones.
/// </summary>
public sealed class McpCallers(IHttpContextAccessor http, IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json, IEnumerable<UniqueConstraintProblem> constraints)
{
    public JsonSerializerOptions Json => json.Value.SerializerOptions;

    /// <summary>The service's own address as the MCP client reached it (for links it hands out).</summary>
    public string BaseUrl => http.HttpContext is { } c ? $"{c.Request.Scheme}://{c.Request.Host}" : "";

    /// <summary>Runs a tool for the caller: the key's project and scope checks, then <paramref name="work"/>; its value
    /// as the tool's JSON text, a refusal or a use case's problem as an error result in words an agent can act on.</summary>
    public async Task<CallToolResult> CallAsync(string? projectId, string scope, string tool, Func<Caller, Task<object>> work)
    {
        try
        {
            return Answer(await work(For(projectId, scope, tool)));
        }
        catch (ToolRefusal refusal)
        {
            return Refused(refusal.Message);
        }
        catch (Exception e) when (UniqueConstraintProblem.Find(e, constraints) is { } problem)
        {
            return Refused(Describe(problem));
        }
    }

    public Caller For(string? projectId, string scope, string tool)
    {
        var context = http.HttpContext ?? throw new ToolRefusal("No request context.");
        var user = context.User;
        if (user.Identity?.IsAuthenticated != true) throw new ToolRefusal("Authentication credentials were not provided or are invalid.");

        var projects = user.FindAll(ApiKeyClaims.Project).Select(c => c.Value).ToList();
        if (string.IsNullOrEmpty(projectId))
        {
            projectId = projects is [var only] && only != ApiKey.AllProjects
                ? only
                : throw new ToolRefusal(projects.Contains(ApiKey.AllProjects)
                    ? "Missing argument 'project_id': this API key reaches every project, so say which one."
                    : $"Missing argument 'project_id': this API key reaches {projects.Count} projects ({string.Join(", ", projects)}), so say which one.");
        }
        else if (!projects.Contains(ApiKey.AllProjects) && !projects.Contains(projectId))
        {
            throw new ToolRefusal($"Not found: project '{projectId}' is not one this API key can reach (argument 'project_id').");
        }

        var scopes = user.FindAll(ApiKeyClaims.Scope).Select(c => c.Value).ToHashSet();
        if (!scopes.Contains(scope) && !(scope == Scopes.Read && scopes.Contains(Scopes.Write)))
            throw new ToolRefusal($"Permission denied: {tool} needs the '{scope}' scope, and this API key does not have it (API key missing required scope '{scope}').");
        return new Caller(HttpCaller.ActorOf(user), projectId, Channel.Mcp, HttpCaller.CorrelationIdOf(context), $"mcp {tool}#{context.TraceIdentifier}");
    }

    /// <summary>Runs a use case for the tool: its answer, or its problem as a refusal.</summary>
    public async Task<object> RunAsync<T>(IMessageBus bus, ICommand command, CancellationToken ct) where T : class => Value(await bus.RunAsync<T>(command, ct));

    /// <summary>A use case's or query's answer, or its problem as a refusal.</summary>
    public static T Value<T>(Checked<T> outcome) where T : class => outcome.Problem is { } problem ? throw new ToolRefusal(Describe(problem)) : outcome.Value!;

    /// <summary>"Not found" for a source id, naming the argument.</summary>
    public static ToolRefusal NotFound(Guid id, string argument = "id") => new($"Not found: no source '{id}' in this project (argument '{argument}').");

    /// <summary>A problem response in words: its detail, and the argument it is about in the tool's own names (the
    /// same as the REST body's, so <c>attr</c> is one already).</summary>
    public static string Describe(ProblemDetails problem)
    {
        var detail = problem.Detail ?? problem.Title ?? "Refused.";
        return problem.Extensions.TryGetValue("attr", out var attr) && attr is string field && field.Length > 0
            ? $"Invalid argument '{field}': {detail}"
            : problem.Status == StatusCodes.Status404NotFound ? $"Not found: {detail}" : detail;
    }

    private CallToolResult Answer(object value) => new()
    {
        Content = [new TextContentBlock { Text = value is JsonNode node ? node.ToJsonString(Json) : JsonSerializer.Serialize(value, value.GetType(), Json) }],
    };

    public static CallToolResult Refused(string message) => new() { IsError = true, Content = [new TextContentBlock { Text = message }] };

    public static JsonObject Object(JsonElement? element) =>
        element is { ValueKind: JsonValueKind.Object } e ? JsonNode.Parse(e.GetRawText())!.AsObject() : new JsonObject();
}
