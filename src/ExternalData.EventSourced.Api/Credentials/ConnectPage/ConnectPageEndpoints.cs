using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Credentials.Stashing;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using Wolverine;
using Wolverine.Http;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Credentials.ConnectPage;

/// <summary>What the page posts: the form as the source type's config.</summary>
public sealed record ConnectSubmission(JsonObject? Payload);

/// <summary>
/// The connect page (API.md §5): the third channel of the credential stash. The token is the only authority: it
/// names the project and source type, and its link stream says whether it may still be used. The page needs no API
/// key, and a token for one project can only ever stash into that project.
/// </summary>
public static class ConnectPageEndpoints
{
    // Nothing but the service's own script and style; no framing; the token in the URL never leaves as a referrer.
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

    [WolverineGet("/connect/{token}")]
    [ProducesResponseType<string>(StatusCodes.Status200OK, "text/html")]
    public static async Task<IResult> Get(string token, ConnectLinkTokens tokens, IDocumentStore store, SourceTypeRegistry registry, TimeProvider clock, HttpContext context)
    {
        Harden(context);
        var (link, problem) = await ResolveAsync(token, tokens, store, clock, context.RequestAborted);
        if (problem is not null)
            return Results.Content(problem.Status == 404 ? ConnectPageHtml.NotFound() : ConnectPageHtml.Gone(), "text/html; charset=utf-8", statusCode: problem.Status);
        // A link for a source type this build no longer has cannot be filled in.
        return registry.TryGet(link!.SourceType, out var type)
            ? Results.Content(ConnectPageHtml.Form(type.Definition, link.ExpiresAt), "text/html; charset=utf-8")
            : Results.Content(ConnectPageHtml.NotFound(), "text/html; charset=utf-8", statusCode: StatusCodes.Status404NotFound);
    }

    /// <summary>Runs exactly the store_credentials use case, with channel <c>web</c>, acting for whoever issued the link.</summary>
    [WolverinePost("/connect/{token}/credentials")]
    [ProducesResponseType<StoredCredential>(StatusCodes.Status201Created)]
    public static async Task<IResult> Post(string token, ConnectSubmission submission, ConnectLinkTokens tokens, IDocumentStore store, TimeProvider clock,
        IMessageBus bus, HttpContext context)
    {
        Harden(context);
        var (link, problem) = await ResolveAsync(token, tokens, store, clock, context.RequestAborted);
        if (problem is not null) return Results.Problem(problem);
        var read = tokens.Read(token)!;
        var caller = new Caller(link!.IssuedBy, read.ProjectId, Channel.Web, HttpCaller.CorrelationIdOf(context), $"POST /connect#{context.TraceIdentifier}");
        var outcome = await bus.RunAsync<StoredCredential>(
            new StashCredentials(read.SourceType, submission.Payload) { Caller = caller, ConnectLinkId = read.LinkId }, context.RequestAborted);
        return outcome.Problem is { } refused ? Results.Problem(refused) : Results.Json(outcome.Value, statusCode: StatusCodes.Status201Created);
    }

    [WolverineGet("/connect/assets/{file}")]
    [ProducesResponseType<string>(StatusCodes.Status200OK, "text/javascript", "text/css", "image/svg+xml")]
    public static IResult Asset(string file, HttpContext context)
    {
        Harden(context);
        var (resource, type) = file switch
        {
            "connect.js" => ("connect.js", "text/javascript; charset=utf-8"),
            "connect.css" => ("connect.css", "text/css; charset=utf-8"),
            "icon.svg" => ("icon.svg", "image/svg+xml"),
            _ => (null, null),
        };
        var stream = resource is null ? null : typeof(ConnectPageEndpoints).Assembly.GetManifestResourceStream($"ExternalData.EventSourced.ConnectPage.{resource}");
        return stream is null ? Results.Problem(Problems.NotFound()) : Results.Stream(stream, type);
    }

    private static async Task<(ConnectLink? Link, Microsoft.AspNetCore.Mvc.ProblemDetails? Problem)> ResolveAsync(
        string token, ConnectLinkTokens tokens, IDocumentStore store, TimeProvider clock, CancellationToken ct)
    {
        if (tokens.Read(token) is not { } read) return (null, Problems.NotFound("This link is not valid."));
        await using var session = store.QuerySession(read.ProjectId);
        var link = await session.LoadAsync<ConnectLink>(read.LinkId, ct);
        if (link is null) return (null, Problems.NotFound("This link is not valid."));
        return link.IsUsableAt(clock.GetUtcNow()) ? (link, null) : (null, StashCredentialsHandler.ConnectLinkGone());
    }

    private static void Harden(HttpContext context)
    {
        var headers = context.Response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
        headers.CacheControl = "no-store";
    }
}
