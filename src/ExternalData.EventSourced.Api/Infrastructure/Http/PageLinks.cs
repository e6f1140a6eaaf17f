using System.Globalization;
using ExternalData.EventSourced.Shared;
using Microsoft.AspNetCore.WebUtilities;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>A REST page's next/previous links: absolute URLs on the path the caller used (before route aliasing).</summary>
public static class PageLinks
{
    public static (string? Next, string? Previous) For(long total, int limit, int offset, HttpContext context)
    {
        var baseUrl = $"{context.Request.Scheme}://{context.Request.Host}{context.OriginalPath()}";
        string Link(int newOffset)
        {
            var query = QueryHelpers.ParseQuery(context.Request.QueryString.Value)
                .ToDictionary(kv => kv.Key, kv => (string?)kv.Value.ToString());
            query["limit"] = limit.ToString(CultureInfo.InvariantCulture);
            query["offset"] = newOffset.ToString(CultureInfo.InvariantCulture);
            return QueryHelpers.AddQueryString(baseUrl, query);
        }

        return (offset + limit < total ? Link(offset + limit) : null, offset > 0 ? Link(Math.Max(0, offset - limit)) : null);
    }

    public static Page<T> PageOf<T>(IReadOnlyList<T> results, long total, int limit, int offset, HttpContext context)
    {
        var (next, previous) = For(total, limit, offset, context);
        return new Page<T>(total, next, previous, results);
    }
}
