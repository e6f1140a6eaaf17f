using System.Diagnostics;
using System.Security.Claims;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Infrastructure.Auth;

/// <summary>The REST and MCP channels' caller: the API key the request authenticated with.</summary>
public static class HttpCaller
{
    /// <summary>A REST caller: the API key, the caller's <c>X-Request-Id</c> (else the W3C trace id of
    /// <c>traceparent</c>, else a new id), and the request line as the cause.</summary>
    public static Caller From(HttpContext context, string projectId, string channel = Shared.Channel.Api) => new(
        ActorOf(context.User),
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

    public static Actor ActorOf(ClaimsPrincipal user) => new(
        Guid.TryParse(user.FindFirstValue(ApiKeyClaims.KeyId), out var id) ? id : Guid.Empty,
        user.FindFirstValue(ApiKeyClaims.KeyName) ?? "unknown");
}
