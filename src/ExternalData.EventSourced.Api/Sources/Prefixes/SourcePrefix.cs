using System.Text.RegularExpressions;
using ExternalData.EventSourced.Infrastructure.Http;
using Marten;
using Microsoft.AspNetCore.Mvc;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>The warehouse table-name prefix rules (ref §2.5) and the direct-query name rule.</summary>
public static partial class SourcePrefix
{
    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex Allowed();

    /// <summary>Empty is allowed; otherwise, stripped of outer underscores, it must be an identifier.</summary>
    public static ProblemDetails? CheckCharacters(string? prefix)
    {
        if (string.IsNullOrEmpty(prefix)) return null;
        var stripped = prefix.Trim('_');
        if (stripped.Length == 0) return Problems.Validation("Prefix cannot consist of only underscores", "prefix", "invalid_prefix");
        return Allowed().IsMatch(stripped)
            ? null
            : Problems.Validation("Prefix must contain only letters, numbers, and underscores, and start with a letter or underscore", "prefix", "invalid_prefix");
    }

    /// <summary>Per project and source type, among live sources: one without a prefix, and each prefix once.</summary>
    public static ProblemDetails? CheckAvailable(string? prefix, IReadOnlyCollection<string?> prefixesInUse)
    {
        if (string.IsNullOrEmpty(prefix))
        {
            return prefixesInUse.Any(string.IsNullOrEmpty)
                ? Problems.Validation("Source type already exists. Prefix is required", "prefix", "prefix_required")
                : null;
        }

        return prefixesInUse.Contains(prefix, StringComparer.Ordinal)
            ? Problems.Validation("Prefix already exists", "prefix", "prefix_taken")
            : null;
    }

    public static ProblemDetails? CheckDirectName(string? name) =>
        string.IsNullOrWhiteSpace(name) ? Problems.Validation("Name is required for direct query sources", "prefix", "name_required") : null;

    /// <summary>The prefixes live warehouse sources of this type use in the session's project (the session is tenant-scoped).</summary>
    public static async Task<IReadOnlyList<string?>> InUseAsync(IQuerySession session, string sourceType, CancellationToken ct) =>
        (await session.Query<Source>()
            .Where(s => s.SourceType == sourceType && s.AccessMethod == AccessMethods.Warehouse)
            .Select(s => new { s.Prefix })
            .ToListAsync(ct)).Select(p => string.IsNullOrEmpty(p.Prefix) ? null : p.Prefix).ToList();
}
