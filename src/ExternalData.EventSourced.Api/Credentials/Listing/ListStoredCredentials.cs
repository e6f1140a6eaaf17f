using Marten;
using Wolverine.Http;

namespace ExternalData.EventSourced.Credentials.Listing;

/// <summary>GET external_data_sources/stored_credentials/ (API.md §3 row 11, ref §5.18): the project's usable stashes,
/// newest first, as a bare array; <c>source_type</c> is an exact filter, <c>search</c> a substring of the type.</summary>
public static class ListStoredCredentialsEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/stored_credentials")]
    public static Task<IReadOnlyList<StoredCredentialSummary>> Get(
        string? source_type, string? search, IQuerySession session, TimeProvider clock, CancellationToken ct) => QueryAsync(session, source_type, search, clock, ct);

    public static async Task<IReadOnlyList<StoredCredentialSummary>> QueryAsync(
        IQuerySession session, string? source_type, string? search, TimeProvider clock, CancellationToken ct)
    {
        // The expiry message removes a stash from this list; the time filter also hides one whose message is late.
        var now = clock.GetUtcNow();
        var query = session.Query<StoredCredentialSummary>().Where(s => s.ExpiresAt > now);
        if (!string.IsNullOrEmpty(source_type)) query = query.Where(s => s.SourceType == source_type);
        if (!string.IsNullOrWhiteSpace(search))
        {
            var term = search.Trim();
            query = query.Where(s => s.SourceType.Contains(term, StringComparison.OrdinalIgnoreCase));
        }

        return await query.OrderByDescending(s => s.CreatedAt).ToListAsync(ct);
    }
}
