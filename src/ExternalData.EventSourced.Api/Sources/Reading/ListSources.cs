using Microsoft.AspNetCore.Mvc;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using Wolverine.Http;
using ExternalData.EventSourced.Infrastructure.Http;

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

        var (page, total) = await SourceQueries.PageAsync(session, registry, take, skip, search, ct);
        var (next, previous) = PageLinks.For(total, take, skip, context);
        return SourceResponses.Page(page, total, next, previous, session);
    }
}
