using Marten;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>A direct-query source a caller can run live SQL against (ref §4.4).</summary>
public sealed record ConnectionOption(Guid Id, string? Prefix, string? Engine);

/// <summary>GET external_data_sources/connections/ (API.md §3 row 14, ref §5.13): the project's direct-query
/// sources, newest first, as a bare array.</summary>
public static class ListConnectionsEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/connections")]
    public static async Task<IReadOnlyList<ConnectionOption>> Get(IQuerySession session, CancellationToken ct) =>
        (await session.Query<Source>()
            .Where(s => s.AccessMethod == AccessMethods.Direct)
            .OrderByDescending(s => s.CreatedAt)
            .Select(s => new { s.Id, s.Prefix, s.Engine })
            .ToListAsync(ct))
        .Select(s => new ConnectionOption(s.Id, s.Prefix, s.Engine))
        .ToList();
}
