using System.Security.Cryptography;
using System.Text;

namespace ExternalData.EventSourced.Infrastructure.Auth;

/// <summary>
/// A personal API key (API.md §1.2). Only a SHA-256 hash of the token is stored: the token is 256 random bits,
/// so a fast hash is enough and a database leak yields nothing usable.
/// </summary>
public sealed class ApiKey
{
    public const string AllProjects = "all";

    public Guid Id { get; set; }
    public string Name { get; set; } = "";
    public string TokenHash { get; set; } = "";
    /// <summary>The first characters of the token, shown to operators to tell keys apart.</summary>
    public string TokenPrefix { get; set; } = "";
    public string[] Scopes { get; set; } = [];
    /// <summary>Project ids the key may act on, or <see cref="AllProjects"/>.</summary>
    public string[] Projects { get; set; } = [];
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }

    public bool CanAccess(string projectId) => Projects.Contains(AllProjects) || Projects.Contains(projectId);

    public static (ApiKey Key, string Token) Issue(string name, IEnumerable<string> scopes, IEnumerable<string> projects, DateTimeOffset now)
    {
        var token = "edk_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var key = new ApiKey
        {
            Id = Guid.CreateVersion7(),
            Name = name,
            TokenHash = Hash(token),
            TokenPrefix = token[..10],
            Scopes = scopes.ToArray(),
            Projects = projects.ToArray(),
            CreatedAt = now,
        };
        return (key, token);
    }

    public static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
}

public static class Scopes
{
    public const string Read = "external_data_source:read";
    public const string Write = "external_data_source:write";
    public static readonly string[] All = [Read, Write];
}

public static class ApiKeyClaims
{
    public const string KeyId = "api_key_id";
    public const string KeyName = "api_key_name";
    public const string Scope = "scope";
    public const string Project = "project";
}
