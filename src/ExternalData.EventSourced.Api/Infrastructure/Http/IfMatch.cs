using System.Globalization;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>Optimistic concurrency for callers: <c>If-Match: 3</c> or <c>If-Match: "3"</c> names the source
/// version the change was based on; a stale one answers 409.</summary>
public static class IfMatch
{
    public static int? Version(HttpContext context)
    {
        var header = context.Request.Headers.IfMatch.ToString().Trim();
        if (header.StartsWith("W/", StringComparison.Ordinal)) header = header[2..];
        return int.TryParse(header.Trim('"'), NumberStyles.Integer, CultureInfo.InvariantCulture, out var version) ? version : null;
    }

    public static ProblemDetails Stale(int current, int expected) =>
        Problems.Conflict($"The source is at version {current}, not {expected}. Fetch it again and re-apply your change.", "stale_version", "If-Match");
}
