using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using ExternalData.EventSourced.SourceTypes.Discovery;

namespace ExternalData.EventSourced.Sources;

/// <summary>What a rediscovery changes: the tables to add, and the rest of what <see cref="SchemasRefreshed"/> names.</summary>
public sealed record Reconciliation(
    IReadOnlyList<NewSchema> Added,
    IReadOnlyList<RevivedSchema> Revived,
    IReadOnlyList<SchemaRef> Removed,
    IReadOnlyList<SchemaRef> Disabled,
    IReadOnlyList<RefreshedFacts> FactsChanged,
    IReadOnlyList<ColumnDrift> ColumnDrift,
    int TotalTablesSeen)
{
    public bool ChangesAnything => Added.Count + Revived.Count + Removed.Count + Disabled.Count + FactsChanged.Count > 0;
}

/// <summary>
/// Reconciles a source's schemas with a fresh discovery (ref §7.3). Pure: the stored schemas (removed ones
/// included, so a returning table is revived) and the discovered tables in, the changes out.
/// </summary>
public static class SchemaReconciliation
{
    /// <summary>Discovery and reconciliation, shared with a direct source's connection change (ref §5.4 step 4).</summary>
    public static async Task<Checked<Reconciliation>> RediscoverAsync(ISourceType type, JsonObject config, Guid sourceId, IQuerySession session, CancellationToken ct)
    {
        var discovery = await type.DiscoverAsync(config, ct);
        if (!discovery.Check.Ok) return Problems.Validation(discovery.Check.Message!, null, discovery.Check.Code!);
        var stored = await session.Query<SourceSchema>().Where(s => s.SourceId == sourceId).ToListAsync(ct);
        return SchemaReconciliation.Reconcile(stored, discovery.Tables, Guid.CreateVersion7);
    }

    /// <summary>The new tables as one event each, then one event naming everything else the rediscovery changed.</summary>
    public static IReadOnlyList<object> Events(Guid sourceId, Reconciliation result, Caller caller, DateTimeOffset now)
    {
        var events = new List<object>();
        events.AddRange(result.Added.Select(s => new SchemaAdded(sourceId, s.Id, s.Name, s.Facts, s.Settings, caller.Actor, caller.Channel, now)));
        events.Add(new SchemasRefreshed(sourceId, result.Added.Select(a => a.Name).ToList(), result.Revived, result.Removed, result.Disabled,
            result.FactsChanged, result.ColumnDrift, result.TotalTablesSeen, caller.Actor, caller.Channel, now));
        return events;
    }


    public static Reconciliation Reconcile(IReadOnlyList<SourceSchema> stored, IReadOnlyList<DiscoveredTable> discovered, Func<Guid> newId)
    {
        var added = new List<NewSchema>();
        var revived = new List<RevivedSchema>();
        var factsChanged = new List<RefreshedFacts>();
        var drift = new List<ColumnDrift>();
        var seen = new HashSet<Guid>();

        foreach (var table in discovered)
        {
            var facts = SchemaSelection.FactsOf(table);
            if (Match(stored.Where(s => !s.Removed).ToList(), table.Name) is { } live)
            {
                seen.Add(live.Id);
                if (!SameFacts(live.Facts, facts)) factsChanged.Add(new RefreshedFacts(live.Id, live.Name, facts));
                if (live.Settings.ShouldSync && Drift(live, facts) is { } columns) drift.Add(columns);
            }
            else if (stored.Where(s => s.Removed && s.Name == table.Name).MaxBy(s => s.UpdatedAt) is { } gone)
            {
                seen.Add(gone.Id);
                revived.Add(new RevivedSchema(gone.Id, gone.Name, facts));
            }
            else
            {
                added.Add(new NewSchema(newId(), table.Name, facts, SyncSettings.Disabled));
            }
        }

        var vanished = stored.Where(s => !s.Removed && !seen.Contains(s.Id)).ToList();
        var removed = vanished.Where(s => !s.EverEnabled).Select(s => new SchemaRef(s.Id, s.Name)).ToList();
        var disabled = vanished.Where(s => s.EverEnabled && s.Settings.ShouldSync).Select(s => new SchemaRef(s.Id, s.Name)).ToList();
        return new Reconciliation(added, revived, removed, disabled, factsChanged, drift, discovered.Count);
    }

    /// <summary>A bare name and a qualified <c>schema.table</c> are the same table when exactly one side is
    /// qualified and the last segment matches (and only one stored schema matches that way).</summary>
    private static SourceSchema? Match(IReadOnlyList<SourceSchema> live, string name)
    {
        if (live.FirstOrDefault(s => s.Name == name) is { } exact) return exact;
        var candidates = live.Where(s => s.Name.Contains('.') != name.Contains('.') && LastSegment(s.Name) == LastSegment(name)).ToList();
        return candidates.Count == 1 ? candidates[0] : null;
    }

    private static string LastSegment(string name) => name[(name.LastIndexOf('.') + 1)..];

    private static bool SameFacts(TableFacts a, TableFacts b) => JsonSerializer.Serialize(a) == JsonSerializer.Serialize(b);

    private static ColumnDrift? Drift(SourceSchema schema, TableFacts now)
    {
        var before = schema.Facts.Columns.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        var after = now.Columns.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        var appeared = after.Except(before).Order(StringComparer.Ordinal).ToList();
        var vanished = before.Except(after).Order(StringComparer.Ordinal).ToList();
        return appeared.Count + vanished.Count == 0 ? null : new ColumnDrift(schema.Id, schema.Name, appeared, vanished);
    }
}
