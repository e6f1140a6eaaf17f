using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using Microsoft.Extensions.Options;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Credentials.ConnectLinks;

/// <summary>GET external_data_sources/connect_link/?source_type=X (API.md §3 row 12, §5): a single-use link to a page
/// where a person enters the secrets, so they never pass through the agent that asked.</summary>
public sealed record IssueConnectLink(string? SourceType) : ICommand
{
    [JsonIgnore] public Caller Caller { get; init; } = null!;
    /// <summary>Where the page is served, e.g. https://data.example.com (the channel knows its own address).</summary>
    [JsonIgnore] public string BaseUrl { get; init; } = "";
}

public sealed record ConnectLinkAnswer(string SourceType, string AuthMethod, string ConnectUrl, string Instructions, DateTimeOffset ExpiresAt);

public static class IssueConnectLinkHandler
{
    public const string Instructions =
        "Send this link to the person who owns the credentials and ask them to open it in their browser; it works once and expires at expires_at. " +
        "Never ask for passwords, API keys or other secrets in the chat. When they say they are done, find the new credential with " +
        "stored_credentials (filter by source_type) and call setup with {\"payload\": {\"credential_id\": \"<credential_id>\"}}. " +
        "A stored credential is single use and expires 24 hours after it was entered.";

    public static Checked<ISourceType> Load(IssueConnectLink command, SourceTypeRegistry registry) =>
        string.IsNullOrWhiteSpace(command.SourceType) ? Problems.Validation("Missing required parameter: source_type", "source_type", "required")
        : registry.TryGet(command.SourceType, out var type) ? new Checked<ISourceType>(type, null)
        : Problems.Validation($"Unknown source_type '{command.SourceType}'", "source_type", "unknown_source_type");

    public static (Checked<ConnectLinkAnswer>, IMartenOp) Handle(
        IssueConnectLink command, Checked<ISourceType> type, ConnectLinkTokens tokens, TimeProvider clock, IOptions<ConnectLinkOptions> options)
    {
        if (type.Problem is { } problem) return (problem, MartenOps.Nothing());
        var now = clock.GetUtcNow();
        var issued = new ConnectLinkIssued(Guid.CreateVersion7(now), command.Caller.ProjectId, type.Value!.Definition.Name, command.Caller.Actor,
            command.Caller.Channel, now, now + options.Value.TimeToLive);
        var token = tokens.Issue(new ConnectToken(issued.LinkId, issued.ProjectId, issued.SourceType));
        var baseUrl = (options.Value.PublicBaseUrl is { Length: > 0 } configured ? configured : command.BaseUrl).TrimEnd('/');
        return (new ConnectLinkAnswer(issued.SourceType, "credentials", $"{baseUrl}/connect/{token}", Instructions, issued.ExpiresAt),
            MartenOps.StartStream<ConnectLink>(issued.LinkId, issued));
    }
}

public static class IssueConnectLinkEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/connect_link")]
    [ProducesResponseType<ConnectLinkAnswer>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(string project_id, string? source_type, HttpContext context, IMessageBus bus)
    {
        var command = new IssueConnectLink(source_type)
        {
            Caller = HttpCaller.From(context, project_id), BaseUrl = $"{context.Request.Scheme}://{context.Request.Host}",
        };
        var outcome = await bus.RunAsync<ConnectLinkAnswer>(command, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
