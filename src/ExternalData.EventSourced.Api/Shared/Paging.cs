using System.Globalization;
using ExternalData.EventSourced.Infrastructure.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.WebUtilities;

namespace ExternalData.EventSourced.Shared;

/// <summary>A page of a paginated list, PostHog's shape (ref §1.4): next/previous are absolute URLs or null.</summary>
public sealed record Page<T>(long Count, string? Next, string? Previous, IReadOnlyList<T> Results);

/// <summary>limit/offset parsing and page links shared by every paginated list.</summary>
public static class Paging
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    public static (int? Limit, int? Offset) Parse(string? limit, string? offset)
    {
        int? take = string.IsNullOrEmpty(limit) ? DefaultLimit
            : int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out var l) && l > 0 ? Math.Min(l, MaxLimit) : null;
        int? skip = string.IsNullOrEmpty(offset) ? 0
            : int.TryParse(offset, NumberStyles.None, CultureInfo.InvariantCulture, out var o) ? o : null;
        return (take, skip);
    }

    public static ProblemDetails Problem(string? limit) =>
        Parse(limit, null).Limit is null
            ? Problems.Validation("limit must be a positive integer.", "limit", "invalid_limit")
            : Problems.Validation("offset must be a non-negative integer.", "offset", "invalid_offset");

    public static (string? Next, string? Previous) Links(long total, int limit, int offset, HttpContext context)
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
        var (next, previous) = Links(total, limit, offset, context);
        return new Page<T>(total, next, previous, results);
    }
}
