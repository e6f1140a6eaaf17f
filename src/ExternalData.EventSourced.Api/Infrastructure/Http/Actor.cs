using System.Security.Claims;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Infrastructure.Http;

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
    public const string Item = "externaldata.created_via";
    public const string Api = "api";
    public const string Mcp = "mcp";
    public const string Web = "web";

    public static string Of(HttpContext context) => context.Items[Item] as string ?? Api;
}
