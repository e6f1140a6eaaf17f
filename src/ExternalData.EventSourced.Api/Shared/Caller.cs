using System.Diagnostics;
using System.Security.Claims;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Shared;

/// <summary>Who caused a change: the API key's id and name. Carried in every event body and in event metadata.</summary>
public sealed record Actor(Guid ApiKeyId, string Name)
{
    public static Actor From(ClaimsPrincipal user) => new(
        Guid.TryParse(user.FindFirstValue(ApiKeyClaims.KeyId), out var id) ? id : Guid.Empty,
        user.FindFirstValue(ApiKeyClaims.KeyName) ?? "unknown");
}

/// <summary>How a change came in: <c>api</c>, <c>mcp</c> or <c>web</c> (API.md §1.7).</summary>
public static class Channel
{
    public const string Api = "api";
    public const string Mcp = "mcp";
    public const string Web = "web";
    public static readonly string[] All = [Api, Mcp, Web];
}

/// <summary>
/// Who invoked a use case, on which project, through which channel, and the ids that tie its events to the request
/// that caused them. Every channel builds one (REST from the request, MCP from the tool call, the connect page from
/// its token) and hands it to the use case with the command; nothing below the channel looks at an HttpContext.
/// </summary>
public sealed record Caller(Actor Actor, string ProjectId, string Channel, string CorrelationId, string CausationId)
{
    /// <summary>A REST caller: the API key, the caller's <c>X-Request-Id</c> (else the W3C trace id of
    /// <c>traceparent</c>, else a new id), and the request line as the cause.</summary>
    public static Caller FromHttp(HttpContext context, string projectId, string channel = Shared.Channel.Api) => new(
        Actor.From(context.User),
        projectId,
        channel,
        CorrelationIdOf(context),
        $"{context.Request.Method} {context.Request.Path}#{context.TraceIdentifier}");

    public static string CorrelationIdOf(HttpContext context)
    {
        if (context.Request.Headers["X-Request-Id"].FirstOrDefault() is { Length: > 0 and <= 200 } requestId) return requestId;
        if (context.Request.Headers["traceparent"].FirstOrDefault() is { } traceparent && traceparent.Split('-') is [_, { Length: 32 } traceId, ..])
            return traceId;
        return Activity.Current?.TraceId.ToString() ?? Guid.NewGuid().ToString("N");
    }
}

/// <summary>A use-case command: the request plus the caller it came from. The caller never comes from the request
/// body (it is <c>[JsonIgnore]</c>d on every command); the channel sets it.</summary>
public interface ICommand
{
    Caller Caller { get; }
}
