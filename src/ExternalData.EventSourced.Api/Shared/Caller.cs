namespace ExternalData.EventSourced.Shared;

/// <summary>Who caused a change: the API key's id and name, or the service itself. Carried in every event body and in event metadata.</summary>
public sealed record Actor(Guid ApiKeyId, string Name)
{
    /// <summary>The service itself, acting on its own (a schedule, an expiry, a retry): <c>system:&lt;component&gt;</c>,
    /// with no API key.</summary>
    public static Actor System(string component) => new(Guid.Empty, SystemPrefix + component);

    public const string SystemPrefix = "system:";
}

/// <summary>How a change came in: <c>api</c>, <c>mcp</c> or <c>web</c> (API.md §1.7), or <c>system</c> when the service did it.</summary>
public static class Channel
{
    public const string Api = "api";
    public const string Mcp = "mcp";
    public const string Web = "web";
    /// <summary>The service itself: its scheduler, expiries, retries.</summary>
    public const string System = "system";
    public static readonly string[] All = [Api, Mcp, Web, System];
    /// <summary>What a request body may say it came through (create's <c>created_via</c>, ref §5.2): never <c>system</c>.</summary>
    public static readonly string[] Requestable = [Api, Mcp, Web];
}

/// <summary>
/// Who invoked a use case, on which project, through which channel, and the ids that tie its events to the request
/// that caused them. Every channel builds one (REST from the request, MCP from the tool call, the connect page from
/// its token) and hands it to the use case with the command; nothing below the channel looks at an HttpContext.
/// </summary>
public sealed record Caller(Actor Actor, string ProjectId, string Channel, string CorrelationId, string CausationId)
{
    /// <summary>The service itself running a use case for a project: actor <c>system:&lt;component&gt;</c>, channel
    /// <c>system</c>, recorded in event bodies and metadata like any other caller.</summary>
    public static Caller System(string projectId, string component, string correlationId, string cause) =>
        new(Actor.System(component), projectId, Shared.Channel.System, correlationId, cause);
}

/// <summary>A use-case command: the request plus the caller it came from. The caller never comes from the request
/// body (it is <c>[JsonIgnore]</c>d on every command); the channel sets it.</summary>
public interface ICommand
{
    Caller Caller { get; }
}
