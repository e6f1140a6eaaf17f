using System.Globalization;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>A page of a paginated list, PostHog's shape (ref §1.4): next/previous are absolute URLs or null.</summary>
public sealed record Page<T>(long Count, string? Next, string? Previous, IReadOnlyList<T> Results);

/// <summary>limit/offset parsing shared by every paginated list, whatever the channel.</summary>
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
}
