using System.Globalization;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using Marten.Linq;
using Microsoft.AspNetCore.WebUtilities;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>A page of a paginated list, PostHog's shape (ref §1.4): next/previous are absolute URLs or null.</summary>
public sealed record Page<T>(long Count, string? Next, string? Previous, IReadOnlyList<T> Results);

/// <summary>GET external_data_sources/ (API.md §3 row 1, ref §5.1): newest first, limit/offset, search.</summary>
public static class ListSourcesEndpoint
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    [WolverineGet("/api/projects/{project_id}/external_data_sources")]
    public static async Task<IResult> Get(
        string? limit, string? offset, string? search, IQuerySession session, SourceTypeRegistry registry, HttpContext context, CancellationToken ct)
    {
        if (Paging.Parse(limit, offset) is not ({ } take, { } skip)) return Results.Problem(Paging.Problem(limit));

        IQueryable<SourceDetails> query = session.Query<SourceDetails>().Stats(out var stats);
        if (!string.IsNullOrWhiteSpace(search))
        {
            var term = search.Trim();
            query = query.Where(s => s.SourceType.Contains(term, StringComparison.OrdinalIgnoreCase)
                                     || (s.Prefix != null && s.Prefix.Contains(term, StringComparison.OrdinalIgnoreCase)));
        }

        var results = await query.OrderByDescending(s => s.CreatedAt).Skip(skip).Take(take).ToListAsync(ct);
        foreach (var source in results) source.WithCapabilitiesFrom(registry);
        return Results.Json(Paging.PageOf(results, stats.TotalResults, take, skip, context));
    }
}

/// <summary>limit/offset parsing and page links shared by every paginated list.</summary>
public static class Paging
{
    public static (int? Limit, int? Offset) Parse(string? limit, string? offset)
    {
        int? take = string.IsNullOrEmpty(limit) ? ListSourcesEndpoint.DefaultLimit
            : int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out var l) && l > 0 ? Math.Min(l, ListSourcesEndpoint.MaxLimit) : null;
        int? skip = string.IsNullOrEmpty(offset) ? 0
            : int.TryParse(offset, NumberStyles.None, CultureInfo.InvariantCulture, out var o) ? o : null;
        return (take, skip);
    }

    public static Microsoft.AspNetCore.Mvc.ProblemDetails Problem(string? limit) =>
        Parse(limit, null).Limit is null
            ? Problems.Validation("limit must be a positive integer.", "limit", "invalid_limit")
            : Problems.Validation("offset must be a non-negative integer.", "offset", "invalid_offset");

    public static Page<T> PageOf<T>(IReadOnlyList<T> results, long total, int limit, int offset, HttpContext context)
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

        var next = offset + limit < total ? Link(offset + limit) : null;
        var previous = offset > 0 ? Link(Math.Max(0, offset - limit)) : null;
        return new Page<T>(total, next, previous, results);
    }
}
