using Marten;
using ExternalData.EventSourced.SourceTypes;

namespace ExternalData.EventSourced.Sources;

/// <summary>A page of the project's sources and how many the whole list holds.</summary>
public sealed record SourcePage(IReadOnlyList<SourceDetails> Sources, long Count);

/// <summary>
/// The source reads every channel runs: REST streams what these return, MCP hands it to an agent in one text. One place
/// builds a page and its count, so a tool's <c>count</c> is the endpoint's.
/// </summary>
public static class SourceQueries
{
    /// <summary>Newest first (ids are UUIDv7, minted from the creation time, so id order is age order); <paramref name="search"/>
    /// matches the source type or prefix, case-insensitively. The project's total is kept by the store (ADR 0033), so a
    /// first page costs the same at 50 sources as at 50,000; a search counts its matches.</summary>
    public static async Task<SourcePage> PageAsync(IQuerySession session, SourceTypeRegistry registry, int take, int skip, string? search, CancellationToken ct)
    {
        IQueryable<Source> query = session.Query<Source>();
        var searching = !string.IsNullOrWhiteSpace(search);
        if (searching)
        {
            var term = search!.Trim();
            query = query.Where(s => s.SourceType.Contains(term, StringComparison.OrdinalIgnoreCase)
                                     || (s.Prefix != null && s.Prefix.Contains(term, StringComparison.OrdinalIgnoreCase)));
        }

        var page = (await query.OrderByDescending(s => s.Id).Skip(skip).Take(take).ToListAsync(ct)).Select(s => SourceDetails.Of(s, registry)).ToList();
        var total = searching ? await query.CountAsync(ct) : await SourceCounts.OfProjectAsync(session, ct);
        return new SourcePage(page, total);
    }

    /// <summary>The project's source with this id, its own fields only; null when the project has none.</summary>
    public static async Task<SourceDetails?> FindAsync(IQuerySession session, SourceTypeRegistry registry, Guid id, CancellationToken ct) =>
        await session.LoadAsync<Source>(id, ct) is { } source ? SourceDetails.Of(source, registry) : null;

    /// <summary>The source with every schema held in memory, for a channel that answers in one piece (REST streams them
    /// instead, see <see cref="SourceResponses"/>).</summary>
    public static async Task<SourceDetails> WithSchemasAsync(IQuerySession session, SourceDetails source, CancellationToken ct)
    {
        var view = await SourceView.ReadAsync(session, source.Id, withSource: false, withSchemas: true, ct);
        var schemas = new List<SchemaDetails>();
        await foreach (var schema in SourceResponses.SchemasOf(session, source, ct, view.Sync, view.Held)) schemas.Add(schema);
        return source.WithSync(view.Sync).WithSchemas(schemas);
    }
}
