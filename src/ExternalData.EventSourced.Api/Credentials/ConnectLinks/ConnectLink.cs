using System.Security.Cryptography;
using System.Text;
using ExternalData.EventSourced.Shared;
using JasperFx.Events.Projections;
using Marten;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.WebUtilities;

namespace ExternalData.EventSourced.Credentials.ConnectLinks;

/// <summary>A link was issued for a person to enter one source type's credentials in their browser (API.md §5).</summary>
public sealed record ConnectLinkIssued(Guid LinkId, string ProjectId, string SourceType, Actor IssuedBy, string IssuedVia, DateTimeOffset IssuedAt, DateTimeOffset ExpiresAt) : IDomainEvent;

/// <summary>The link was used: the person's credentials became the stash <see cref="CredentialId"/>. Single use.</summary>
public sealed record ConnectLinkSpent(Guid LinkId, Guid CredentialId, DateTimeOffset SpentAt) : IDomainEvent;

/// <summary>The write model of a link: whether it may still be used.</summary>
public sealed class ConnectLink
{
    public Guid Id { get; set; }
    public int Version { get; set; }
    public string SourceType { get; set; } = "";
    public Actor IssuedBy { get; set; } = new(Guid.Empty, "unknown");
    public DateTimeOffset ExpiresAt { get; set; }
    public Guid? SpentFor { get; set; }

    public static ConnectLink Create(ConnectLinkIssued e) => new() { Id = e.LinkId, SourceType = e.SourceType, IssuedBy = e.IssuedBy, ExpiresAt = e.ExpiresAt };

    public void Apply(ConnectLinkSpent e) => SpentFor = e.CredentialId;

    public bool IsUsableAt(DateTimeOffset now) => SpentFor is null && now < ExpiresAt;
}

public sealed class ConnectLinkOptions
{
    public const string Section = "ExternalData:ConnectLinks";

    /// <summary>How long a connect link stays usable.</summary>
    public TimeSpan TimeToLive { get; set; } = TimeSpan.FromHours(1);

    /// <summary>The service's public address for links (e.g. https://data.example.com); the request's own when unset.</summary>
    public string? PublicBaseUrl { get; set; }
}

/// <summary>What a connect token says: which link, for which project and source type.</summary>
public sealed record ConnectToken(Guid LinkId, string ProjectId, string SourceType);

/// <summary>
/// Tokens are ASP.NET Data Protection payloads (authenticated encryption under keys kept in the database, ADR 0020),
/// so a token cannot be forged or altered, and names its project. Expiry and single use are the link's stream's to
/// say (events), not the token's: a bad token is a 404, a used or expired link a 410.
/// </summary>
public sealed class ConnectLinkTokens(IDataProtectionProvider provider)
{
    private readonly IDataProtector _protector = provider.CreateProtector("ExternalData.ConnectLink.v1");

    public string Issue(ConnectToken token) =>
        WebEncoders.Base64UrlEncode(_protector.Protect(Encoding.UTF8.GetBytes($"{token.LinkId:N}|{token.ProjectId}|{token.SourceType}")));

    public ConnectToken? Read(string? text)
    {
        if (string.IsNullOrEmpty(text) || text.Length > 2048) return null;
        try
        {
            var parts = Encoding.UTF8.GetString(_protector.Unprotect(WebEncoders.Base64UrlDecode(text))).Split('|', 3);
            return parts.Length == 3 && Guid.TryParseExact(parts[0], "N", out var id) ? new ConnectToken(id, parts[1], parts[2]) : null;
        }
        catch (Exception e) when (e is CryptographicException or FormatException)
        {
            return null;
        }
    }
}

public static class ConnectLinksConfiguration
{
    public static StoreOptions ConfigureConnectLinks(this StoreOptions options)
    {
        options.Projections.Snapshot<ConnectLink>(SnapshotLifecycle.Inline);
        options.Schema.For<ConnectLink>().MultiTenanted();
        return options;
    }
}
