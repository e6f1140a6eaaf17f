using System.Diagnostics;
using Marten;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>
/// Wolverine middleware on every write endpoint: stamps the Marten session so each appended event records
/// actor, channel, correlation and causation (API.md §1.7). Auditors read these back from <c>mt_events</c>.
/// </summary>
public static class AuditMetadataMiddleware
{
    public const string ActorIdHeader = "actor_id";
    public const string ActorNameHeader = "actor_name";
    public const string CreatedViaHeader = "created_via";

    public static void Before(HttpContext context, IDocumentSession session)
    {
        var actor = Actor.From(context.User);
        session.CorrelationId = CorrelationIdOf(context);
        session.CausationId = $"{context.Request.Method} {context.Request.Path}#{context.TraceIdentifier}";
        session.LastModifiedBy = actor.Name;
        session.SetHeader(ActorIdHeader, actor.ApiKeyId.ToString());
        session.SetHeader(ActorNameHeader, actor.Name);
        session.SetHeader(CreatedViaHeader, Channel.Of(context));
    }

    /// <summary>The caller's <c>X-Request-Id</c>, else the W3C trace id of <c>traceparent</c>, else a new one.</summary>
    public static string CorrelationIdOf(HttpContext context)
    {
        if (context.Request.Headers["X-Request-Id"].FirstOrDefault() is { Length: > 0 and <= 200 } requestId) return requestId;
        if (context.Request.Headers["traceparent"].FirstOrDefault() is { } traceparent && traceparent.Split('-') is [_, { Length: 32 } traceId, ..])
            return traceId;
        return Activity.Current?.TraceId.ToString() ?? Guid.NewGuid().ToString("N");
    }

    public static bool AppliesTo(Wolverine.Http.HttpChain chain) => chain.HttpMethods.Any(m => m is not ("GET" or "HEAD"));
}
