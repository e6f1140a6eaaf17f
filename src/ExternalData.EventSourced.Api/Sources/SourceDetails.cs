using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using JasperFx.Events;
using Marten.Events.Aggregation;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// The Source as list and retrieve return it (API.md §4, ref §4.1). Secrets never reach this document: it is
/// built from the public half of the config only. The stored document holds the source's own fields; its schemas
/// are <see cref="SourceSchema"/> documents, laid into <see cref="Schemas"/> when a response is written, so a
/// source-level change rewrites one small document whatever the table count (ADR 0016).
/// </summary>
public sealed class SourceDetails
{
    public Guid Id { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public string? CreatedBy { get; set; }
    public string? CreatedVia { get; set; }
    // Derived from schema statuses in PostHog (ref §4.1); with no sync engine yet no schema has a status, so it is
    // the stored status. A sync engine will keep per-status counts here, so deriving it stays O(1).
    public string Status { get; set; } = "Running";
    public string SourceType { get; set; } = "";
    public string? LatestError { get; set; }
    public string? Prefix { get; set; }
    public string? Description { get; set; }
    public string AccessMethod { get; set; } = AccessMethods.Warehouse;
    public bool DirectQueryEnabled { get; set; }
    public string? Engine { get; set; }
    public DateTimeOffset? LastRunAt { get; set; }
    /// <summary>Never stored (always null in the document): filled from the schema documents when written out.</summary>
    public List<SchemaDetails>? Schemas { get; set; }
    public JsonObject JobInputs { get; set; } = new();
    public bool SupportsWebhooks { get; set; }
    public bool SupportsColumnSelection { get; set; }
    public int Version { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public WebhookSummary? Webhook { get; set; }
    public CdcSummary? Cdc { get; set; }

    /// <summary>"SourceType:prefix" for warehouse sources, null for direct ones: a unique index on it (per project)
    /// holds the prefix rule even when two creates race past the check.</summary>
    [JsonIgnore]
    public string? WarehousePrefixKey => AccessMethod == AccessMethods.Warehouse ? $"{SourceType}:{Prefix}" : null;

    public SourceDetails WithSchemas(IEnumerable<SchemaDetails>? schemas)
    {
        Schemas = schemas?.ToList();
        return this;
    }
}

/// <summary>
/// Inline, so a read right after a write sees it. Deletion removes the document; the event stream keeps the
/// history, and <c>?as_of=</c> replays it. The methods are static and pure, so an as-of read folds the same way.
/// </summary>
public sealed partial class SourceDetailsProjection : SingleStreamProjection<SourceDetails, Guid>
{
    public static SourceDetails Create(IEvent<SourceCreated> @event)
    {
        var e = @event.Data;
        return new SourceDetails
        {
            Id = e.SourceId,
            CreatedAt = e.CreatedAt,
            CreatedBy = e.CreatedBy.Name,
            CreatedVia = e.CreatedVia,
            SourceType = e.SourceType,
            Prefix = e.Prefix,
            Description = e.Description,
            AccessMethod = e.AccessMethod,
            DirectQueryEnabled = e.DirectQueryEnabled,
            Engine = e.Engine,
            JobInputs = (JsonObject)e.JobInputs.DeepClone(),
            Version = (int)@event.Version,
            UpdatedAt = e.CreatedAt,
        };
    }

    public static void Apply(IEvent<SourceUpdated> @event, SourceDetails details)
    {
        var e = @event.Data;
        details.Prefix = e.Prefix;
        details.Description = e.Description;
        details.DirectQueryEnabled = e.DirectQueryEnabled;
        details.JobInputs = CdcSummary.WithKeys((JsonObject)e.JobInputs.DeepClone(), details.Cdc);
        details.Version = (int)@event.Version;
        details.UpdatedAt = e.UpdatedAt;
    }

    public static void Apply(IEvent<CdcEnabled> @event, SourceDetails details)
    {
        details.Cdc = CdcSummary.From(CdcSettings.From(@event.Data));
        details.JobInputs = CdcSummary.WithKeys(details.JobInputs, details.Cdc);
        Touch(details, @event, @event.Data.EnabledAt);
    }

    public static void Apply(IEvent<CdcSettingsChanged> @event, SourceDetails details)
    {
        var e = @event.Data;
        if (details.Cdc is not null)
            details.Cdc = details.Cdc with { AutoDropSlot = e.AutoDropSlot, LagWarningThresholdMb = e.LagWarningThresholdMb, LagCriticalThresholdMb = e.LagCriticalThresholdMb };
        details.JobInputs = CdcSummary.WithKeys(details.JobInputs, details.Cdc);
        Touch(details, @event, e.ChangedAt);
    }

    public static void Apply(IEvent<CdcDisabled> @event, SourceDetails details)
    {
        details.Cdc = null;
        details.JobInputs = CdcSummary.WithKeys(details.JobInputs, null);
        Touch(details, @event, @event.Data.DisabledAt);
    }

    public static void Apply(IEvent<WebhookRegistered> @event, SourceDetails details) => ApplyWebhook(details, @event, @event.Data.RegisteredAt);
    public static void Apply(IEvent<WebhookRegistrationFailed> @event, SourceDetails details) => ApplyWebhook(details, @event, @event.Data.FailedAt);
    public static void Apply(IEvent<WebhookDeleted> @event, SourceDetails details) => ApplyWebhook(details, @event, @event.Data.DeletedAt);

    private static void ApplyWebhook(SourceDetails details, IEvent @event, DateTimeOffset at)
    {
        details.Webhook = WebhookSummary.Apply(details.Webhook, @event.Data);
        Touch(details, @event, at);
    }

    public static void Apply(IEvent<CdcPublicationTablesChanged> @event, SourceDetails details) => Touch(details, @event, @event.Data.ChangedAt);

    private static void Touch(SourceDetails details, IEvent @event, DateTimeOffset at)
    {
        details.Version = (int)@event.Version;
        if (at > details.UpdatedAt) details.UpdatedAt = at;
    }

    // Schema events move the source's version (If-Match names it) and its updated_at, nothing else here.
    public static void Apply(IEvent<SchemaAdded> @event, SourceDetails details)
    {
        details.Version = (int)@event.Version;
        if (@event.Data.AddedAt > details.UpdatedAt) details.UpdatedAt = @event.Data.AddedAt;
    }

    public static void Apply(IEvent<SchemasBulkUpdated> @event, SourceDetails details)
    {
        details.Version = (int)@event.Version;
        details.UpdatedAt = @event.Data.UpdatedAt;
    }

    public static void Apply(IEvent<SchemasRefreshed> @event, SourceDetails details)
    {
        details.Version = (int)@event.Version;
        details.UpdatedAt = @event.Data.RefreshedAt;
    }

    public static bool ShouldDelete(SourceDeleted e) => true;
}

/// <summary>A source's CDC as the API shows it (API.md §4 <c>cdc</c>). PostHog keeps these as <c>cdc_*</c> keys of
/// <c>job_inputs</c> and shows them there (ref §6.3); they are shown there too, so PostHog clients read them as before.</summary>
public sealed record CdcSummary(
    bool Enabled, string ManagementMode, string SlotName, string PublicationName, string ConsistentPoint, bool AutoDropSlot,
    int LagWarningThresholdMb, int LagCriticalThresholdMb)
{
    public static CdcSummary From(CdcSettings s) =>
        new(true, s.ManagementMode, s.SlotName, s.PublicationName, s.ConsistentPoint, s.AutoDropSlot, s.LagWarningThresholdMb, s.LagCriticalThresholdMb);

    public static JsonObject WithKeys(JsonObject jobInputs, CdcSummary? cdc)
    {
        foreach (var key in jobInputs.Select(kv => kv.Key).Where(k => k.StartsWith("cdc_", StringComparison.Ordinal)).ToList()) jobInputs.Remove(key);
        if (cdc is null) return jobInputs;
        jobInputs["cdc_enabled"] = true;
        jobInputs["cdc_management_mode"] = cdc.ManagementMode;
        jobInputs["cdc_slot_name"] = cdc.SlotName;
        jobInputs["cdc_publication_name"] = cdc.PublicationName;
        jobInputs["cdc_consistent_point"] = cdc.ConsistentPoint;
        jobInputs["cdc_auto_drop_slot"] = cdc.AutoDropSlot;
        jobInputs["cdc_lag_warning_threshold_mb"] = cdc.LagWarningThresholdMb;
        jobInputs["cdc_lag_critical_threshold_mb"] = cdc.LagCriticalThresholdMb;
        return jobInputs;
    }
}
