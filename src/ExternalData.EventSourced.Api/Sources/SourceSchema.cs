using System.Text.Json.Nodes;
using JasperFx.Events;
using Marten;
using Marten.Events.Projections;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// One schema (an upstream table) of a source, as the source's stream says it is now: what discovery saw and the
/// sync settings chosen. PostHog keeps a row per schema; this is that row. A use case that touches some tables
/// loads only their documents; retrieve and list read them by <see cref="SourceId"/>, ordered by name (ADR 0016).
/// </summary>
public sealed class SourceSchema
{
    public Guid Id { get; set; }
    public Guid SourceId { get; set; }
    public string Name { get; set; } = "";
    public TableFacts Facts { get; set; } = new(null, null, [], new DiscoveryFacts(false, false, false, false, false, null, null));
    public SyncSettings Settings { get; set; } = SyncSettings.Disabled;
    /// <summary>Whether the schema was ever enabled: a rediscovery removes a vanished table only if it never was (ref §7.3).</summary>
    public bool EverEnabled { get; set; }
    /// <summary>Removed by a rediscovery (never enabled, gone upstream): hidden, but revived if the table returns.</summary>
    public bool Removed { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>
/// Inline, so the write that changed a schema and the read after it agree. Keyed by schema id and fed from the
/// source's stream: each event names the schemas it concerns, so a bulk update of 10 tables touches 10 documents.
/// The methods are static and pure, so an as-of read folds the same way.
/// </summary>
public sealed partial class SourceSchemaProjection : MultiStreamProjection<SourceSchema, Guid>
{
    public SourceSchemaProjection()
    {
        Identities<SchemaAdded>(SchemasNamedBy);
        Identities<SchemasBulkUpdated>(SchemasNamedBy);
        Identities<SchemasRefreshed>(SchemasNamedBy);
        Identities<CdcDisabled>(SchemasNamedBy);
        // A deletion names no schemas (a 5,000-table source would make it a huge event): the schemas of the deleted
        // source are found in the store, plus any added earlier in the same batch (during a rebuild they are not stored yet).
        CustomGrouping(GroupDeletionsAsync);
    }

    /// <summary>The schemas an event concerns (a deletion, all of its source's: see the grouping above). The one routing
    /// of events to schema documents, used by Marten and by an as-of read alike.</summary>
    public static IReadOnlyList<Guid> SchemasNamedBy(object e) => e switch
    {
        SchemaAdded added => [added.SchemaId],
        SchemasBulkUpdated bulk => bulk.Schemas.Select(s => s.SchemaId).ToList(),
        SchemasRefreshed refreshed => refreshed.Revived.Select(r => r.SchemaId).Concat(refreshed.Removed.Select(r => r.SchemaId))
            .Concat(refreshed.Disabled.Select(r => r.SchemaId)).Concat(refreshed.FactsChanged.Select(r => r.SchemaId)).Distinct().ToList(),
        CdcDisabled disabled => disabled.SchemasReset.Select(s => s.SchemaId).ToList(),
        _ => [],
    };

    /// <summary>This projection's fold: its own Create, Apply and ShouldDelete methods, the ones Marten calls.</summary>
    public static readonly EventFold<SourceSchema> Fold = new(typeof(SourceSchemaProjection));

    private static async Task GroupDeletionsAsync(IQuerySession session, IReadOnlyList<IEvent> events, JasperFx.Events.Grouping.IEventGrouping<Guid> grouping)
    {
        var deletions = events.Where(e => e.Data is SourceDeleted).ToList();
        if (deletions.Count == 0) return;

        var sourceIds = deletions.Select(e => ((SourceDeleted)e.Data).SourceId).ToArray();
        var stored = await session.Query<SourceSchema>()
            .Where(s => s.AnyTenant() && sourceIds.Contains(s.SourceId))
            .Select(s => new { s.Id, s.SourceId })
            .ToListAsync();
        var schemasBySource = stored.Select(s => (s.Id, s.SourceId))
            .Concat(events.Select(e => e.Data).OfType<SchemaAdded>().Select(a => (Id: a.SchemaId, a.SourceId)))
            .ToLookup(s => s.SourceId, s => s.Id);

        foreach (var deletion in deletions)
        foreach (var schemaId in schemasBySource[((SourceDeleted)deletion.Data).SourceId].Distinct())
            grouping.AddEvent(schemaId, deletion);
    }

    public static SourceSchema Create(IEvent<SchemaAdded> @event) => new()
    {
        Id = @event.Data.SchemaId,
        SourceId = @event.Data.SourceId,
        Name = @event.Data.Name,
        Facts = @event.Data.Facts,
        Settings = @event.Data.Settings,
        EverEnabled = @event.Data.Settings.ShouldSync,
        UpdatedAt = @event.Data.AddedAt,
    };

    public static SourceSchema Apply(SchemasBulkUpdated e, SourceSchema schema)
    {
        var change = e.Schemas.First(c => c.SchemaId == schema.Id);
        schema.Settings = change.Settings;
        schema.EverEnabled |= change.Settings.ShouldSync;
        schema.UpdatedAt = e.UpdatedAt;
        return schema;
    }

    public static SourceSchema Apply(SchemasRefreshed e, SourceSchema schema)
    {
        if (e.Revived.FirstOrDefault(r => r.SchemaId == schema.Id) is { } revived)
        {
            schema.Removed = false;
            schema.Facts = revived.Facts;
        }

        if (e.FactsChanged.FirstOrDefault(r => r.SchemaId == schema.Id) is { } refreshed) schema.Facts = refreshed.Facts;
        if (e.Removed.Any(r => r.SchemaId == schema.Id)) schema.Removed = true;
        if (e.Disabled.Any(r => r.SchemaId == schema.Id)) schema.Settings = schema.Settings with { ShouldSync = false };
        schema.UpdatedAt = e.RefreshedAt;
        return schema;
    }

    /// <summary>With CDC off, a CDC schema is "not set up" again, and disabled (ref §10.5).</summary>
    public static SourceSchema Apply(CdcDisabled e, SourceSchema schema)
    {
        schema.Settings = schema.Settings with { SyncType = null, ShouldSync = false, SyncFrequency = schema.Settings.SyncFrequency == "1min" ? "5min" : schema.Settings.SyncFrequency };
        schema.UpdatedAt = e.DisabledAt;
        return schema;
    }

    public static bool ShouldDelete(SourceDeleted e) => true;
}

/// <summary>A schema as the API shows it (ref §4.2).</summary>
public sealed class SchemaDetails
{
    public Guid Id { get; set; }
    public string Name { get; set; } = "";
    public string? Label { get; set; }
    /// <summary>The warehouse table once a run filled it (see <see cref="SyncViews.WithSync(SchemaDetails, SchemaSync?)"/>).</summary>
    public SchemaTable? Table { get; set; }
    public bool ShouldSync { get; set; }
    public DateTimeOffset? LastSyncedAt { get; set; }
    public string? LatestError { get; set; }
    public bool Incremental { get; set; }
    public string? Status { get; set; }
    public string? SyncType { get; set; }
    public string? IncrementalField { get; set; }
    public string? IncrementalFieldType { get; set; }
    public int? IncrementalFieldLookbackSeconds { get; set; }
    public string? SyncFrequency { get; set; }
    public string? SyncTimeOfDay { get; set; }
    public string? Description { get; set; }
    public List<string>? PrimaryKeyColumns { get; set; }
    public string CdcTableMode { get; set; } = "consolidated";
    public List<string>? EnabledColumns { get; set; }
    public JsonArray? RowFilters { get; set; }
    public List<AvailableColumn> AvailableColumns { get; set; } = [];
    /// <summary>Provider deliveries accepted for this table (webhook sync), and when the last arrived.</summary>
    public long WebhookEventsReceived { get; set; }
    public DateTimeOffset? LastWebhookAt { get; set; }
    /// <summary>[beyond] When the scheduler runs this schema next; null when it is not scheduled (disabled, manual, running).</summary>
    public DateTimeOffset? NextSyncAt { get; set; }

    public static SchemaDetails From(SourceSchema schema) => From(schema.Id, schema.Name, schema.Facts, schema.Settings);

    public static SchemaDetails From(Guid id, string name, TableFacts facts, SyncSettings s) => new()
    {
        Id = id,
        Name = name,
        Label = facts.Label,
        ShouldSync = s.ShouldSync,
        Incremental = s.SyncType == SyncTypes.Incremental,
        SyncType = s.SyncType,
        IncrementalField = s.IncrementalField,
        IncrementalFieldType = s.IncrementalFieldType,
        IncrementalFieldLookbackSeconds = s.IncrementalFieldLookbackSeconds,
        SyncFrequency = s.SyncFrequency,
        SyncTimeOfDay = s.SyncTimeOfDay,
        Description = facts.Description,
        PrimaryKeyColumns = s.PrimaryKeyColumns?.ToList(),
        CdcTableMode = s.CdcTableMode ?? "consolidated",
        EnabledColumns = s.EnabledColumns?.ToList(),
        RowFilters = (JsonArray?)s.RowFilters?.DeepClone(),
        AvailableColumns = facts.Columns.ToList(),
    };
}
