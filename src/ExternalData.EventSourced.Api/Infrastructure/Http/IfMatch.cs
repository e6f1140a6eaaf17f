using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>Optimistic concurrency for callers who ask for it: <c>If-Match: 3</c> or <c>If-Match: "3"</c> names the
/// source version the change was based on; a stale one answers 409 <c>stale_version</c>. A caller that sends none
/// never sees a 409 for a race: writes to one source are serialised (ADR 0017).</summary>
public static class IfMatch
{
    public static int? Version(HttpContext context)
    {
        var header = context.Request.Headers.IfMatch.ToString().Trim();
        if (header.StartsWith("W/", StringComparison.Ordinal)) header = header[2..];
        return int.TryParse(header.Trim('"'), NumberStyles.Integer, CultureInfo.InvariantCulture, out var version) ? version : null;
    }

    /// <summary>The 409 when the caller's expected version is not the current one; null when it is, or when the caller named none.</summary>
    public static ProblemDetails? Check(int? expected, int current) => expected is { } v && v != current ? Stale(current, v) : null;

    public static ProblemDetails Stale(int current, int expected) =>
        Problems.Conflict($"The source is at version {current}, not {expected}. Fetch it again and re-apply your change.", "stale_version", "If-Match");
}
