using Marten;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// What a response shows of one source, read in one round trip (ADR 0055): the source's document when asked for, its
/// schemas' sync states, and its schemas in name order when it has at most <see cref="HeldAtMost"/> of them — the
/// common case, where holding them costs less than a second query. A wider source's first schemas are dropped and all
/// of them are streamed after, so its memory stays bounded by the batch, as before.
/// </summary>
public sealed class SourceView
{
    /// <summary>A few hundred tables' documents are a few hundred kilobytes: held. More are streamed.</summary>
    public const int HeldAtMost = 500;

    private SourceView(Source? source, SourceSyncView sync, IReadOnlyList<SourceSchema>? held)
    {
        Source = source;
        Sync = sync;
        Held = held;
    }

    /// <summary>Null when not asked for, or when the project has no such source.</summary>
    public Source? Source { get; }

    public SourceSyncView Sync { get; }

    /// <summary>Every live schema of the source in name order; null when not asked for or too many to hold.</summary>
    public IReadOnlyList<SourceSchema>? Held { get; }

    public static async Task<SourceView> ReadAsync(IQuerySession session, Guid sourceId, bool withSource, bool withSchemas, CancellationToken ct)
    {
        var batch = session.CreateBatchQuery();
        var source = withSource ? batch.Load<Source>(sourceId) : null;
        var states = batch.Query<SchemaSync>().Where(s => s.SourceId == sourceId).ToList();
        // Without the schemas themselves only the enabled ones' ids are needed (the source's status is derived from them).
        var schemas = withSchemas
            ? batch.Query<SourceSchema>().Where(s => s.SourceId == sourceId && !s.Removed).OrderBy(s => s.Name).Take(HeldAtMost + 1).ToList()
            : null;
        var enabledIds = withSchemas ? null
            : batch.Query<SourceSchema>().Where(s => s.SourceId == sourceId && !s.Removed && s.Settings.ShouldSync).Select(s => s.Id).ToList();
        await batch.Execute(ct);

        var held = schemas is null ? null : await schemas;
        if (held is { Count: > HeldAtMost }) held = null;
        HashSet<Guid> enabled = held is not null ? [.. held.Where(s => s.Settings.ShouldSync).Select(s => s.Id)]
            : enabledIds is not null ? [.. await enabledIds]
            : [.. await session.Query<SourceSchema>().Where(s => s.SourceId == sourceId && !s.Removed && s.Settings.ShouldSync).Select(s => s.Id).ToListAsync(ct)];
        var sync = SyncViews.Derive((await states).ToDictionary(s => s.Id), enabled);
        return new SourceView(source is null ? null : await source, sync, held);
    }
}
