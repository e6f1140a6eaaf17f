using Microsoft.AspNetCore.Mvc;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>GET external_data_sources/ (API.md §3 row 1, ref §5.1): newest first, limit/offset, search. Each source
/// comes with all its schemas, streamed (a page of wide sources is never held in memory at once).</summary>
public static class ListSourcesEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources")]
    [ProducesResponseType<Page<SourceDetails>>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(
        string? limit, string? offset, string? search, IQuerySession session, SourceTypeRegistry registry, HttpContext context, CancellationToken ct)
    {
        if (Paging.Parse(limit, offset) is not ({ } take, { } skip)) return Results.Problem(Paging.Problem(limit));

        IQueryable<Source> query = session.Query<Source>();
        var searching = !string.IsNullOrWhiteSpace(search);
        if (searching)
        {
            var term = search!.Trim();
            query = query.Where(s => s.SourceType.Contains(term, StringComparison.OrdinalIgnoreCase)
                                     || (s.Prefix != null && s.Prefix.Contains(term, StringComparison.OrdinalIgnoreCase)));
        }

        // Ids are UUIDv7 minted from the creation time, so id order is age order (and the schema query can follow it).
        // The project's total is kept by the store (SourceCounts), so the first page costs the same at 50 sources as
        // at 50,000; a search counts its matches.
        var page = (await query.OrderByDescending(s => s.Id).Skip(skip).Take(take).ToListAsync(ct)).Select(s => SourceDetails.Of(s, registry)).ToList();
        var total = searching ? await query.CountAsync(ct) : await SourceCounts.OfProjectAsync(session, ct);
        var (next, previous) = Paging.Links(total, take, skip, context);
        return SourceResponses.Page(page, total, next, previous, session);
    }
}
