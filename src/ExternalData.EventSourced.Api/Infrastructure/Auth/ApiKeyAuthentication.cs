using System.Security.Claims;
using System.Text.Encodings.Web;
using ExternalData.EventSourced.Infrastructure.Http;
using Marten;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Infrastructure.Auth;

/// <summary>
/// Authenticates <c>Authorization: Bearer &lt;personal API key&gt;</c> against the stored key hashes. A key found is
/// kept in memory for <c>ExternalData:Auth:KeyCacheSeconds</c> (default 10): the lookup was one database round trip of
/// every request, a tenth of a PATCH (docs/benchmarks.md). So a revocation takes effect on every node within that
/// window (ADR 0030). Unknown tokens are never cached, so guessing cannot fill the memory.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IDocumentStore store,
    IMemoryCache cache,
    IConfiguration configuration) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return AuthenticateResult.NoResult();

        var token = header["Bearer ".Length..].Trim();
        if (token.Length == 0) return AuthenticateResult.Fail("Empty API key.");

        var hash = ApiKey.Hash(token);
        var key = await FindAsync(hash);
        if (key is null || key.RevokedAt is not null) return AuthenticateResult.Fail("Unknown or revoked API key.");

        var claims = new List<Claim> { new(ApiKeyClaims.KeyId, key.Id.ToString()), new(ApiKeyClaims.KeyName, key.Name) };
        claims.AddRange(key.Scopes.Select(s => new Claim(ApiKeyClaims.Scope, s)));
        claims.AddRange(key.Projects.Select(p => new Claim(ApiKeyClaims.Project, p)));
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        return AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName));
    }

    private async Task<ApiKey?> FindAsync(string hash)
    {
        var cacheKey = (typeof(ApiKey), hash);
        if (cache.TryGetValue(cacheKey, out ApiKey? cached)) return cached;
        await using var session = store.QuerySession();
        var key = await session.Query<ApiKey>().FirstOrDefaultAsync(k => k.TokenHash == hash, Context.RequestAborted);
        var seconds = configuration.GetValue("ExternalData:Auth:KeyCacheSeconds", 10);
        if (key is not null && seconds > 0) cache.Set(cacheKey, key, TimeSpan.FromSeconds(seconds));
        return key;
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties) =>
        Problems.WriteAsync(Context, Problems.Unauthenticated("Authentication credentials were not provided or are invalid."));
}

/// <summary>
/// Guards every <c>/api/projects/{project_id}/...</c> route: no key → 401; a project the key cannot see → 404
/// (no existence leak); missing scope → 403. Reads need <c>:read</c>, everything else <c>:write</c>, which is
/// exactly API.md §1.2's table (every read action is a GET). Write implies read.
/// </summary>
public sealed class ProjectAccessMiddleware(RequestDelegate next)
{
    public async Task InvokeAsync(HttpContext context)
    {
        if (context.Request.RouteValues["project_id"] is not string projectId)
        {
            await NextUnlessEmptyIdAsync(context);
            return;
        }

        var user = context.User;
        if (user.Identity?.IsAuthenticated != true)
        {
            await context.ChallengeAsync(ApiKeyAuthenticationHandler.SchemeName);
            return;
        }

        var projects = user.FindAll(ApiKeyClaims.Project).Select(c => c.Value).ToList();
        if (!projects.Contains(ApiKey.AllProjects) && !projects.Contains(projectId))
        {
            await Problems.WriteAsync(context, Problems.NotFound());
            return;
        }

        var required = HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method) ? Scopes.Read : Scopes.Write;
        var scopes = user.FindAll(ApiKeyClaims.Scope).Select(c => c.Value).ToHashSet();
        if (!scopes.Contains(required) && !(required == Scopes.Read && scopes.Contains(Scopes.Write)))
        {
            await Problems.WriteAsync(context, Problems.MissingScope(required));
            return;
        }

        await NextUnlessEmptyIdAsync(context);
    }

    /// <summary>No source has the empty UUID (ids are UUIDv7) and Marten refuses it as a stream id, so a route naming
    /// it is simply not found — after the caller's key and scope are checked, like any other id.</summary>
    private Task NextUnlessEmptyIdAsync(HttpContext context)
    {
        foreach (var name in new[] { "id", "source_id" })
        {
            if (context.Request.RouteValues[name] is string value && Guid.TryParse(value, out var id) && id == Guid.Empty)
                return Problems.WriteAsync(context, Problems.NotFound());
        }

        return next(context);
    }
}
