using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// The Source as list, retrieve, create and update return it (API.md §4, ref §4.1): the public face of the
/// <see cref="Source"/> document, never stored itself. It is built from the public half of the config only, so
/// secrets never reach it. Its schemas are <see cref="SourceSchema"/> documents, laid into <see cref="Schemas"/>
/// or streamed when a response is written, so a source-level change rewrites one small document whatever the table
/// count (ADR 0016, ADR 0032).
/// </summary>
public sealed class SourceDetails
{
    public Guid Id { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public string? CreatedBy { get; set; }
    public string? CreatedVia { get; set; }
    // Derived from the schemas' sync states where a response reads them (SyncViews), else PostHog's stored "Running".
    public string Status { get; set; } = "Running";
    public string SourceType { get; set; } = "";
    public string? LatestError { get; set; }
    public string? Prefix { get; set; }
    public string? Description { get; set; }
    public string AccessMethod { get; set; } = AccessMethods.Warehouse;
    public bool DirectQueryEnabled { get; set; }
    public string? Engine { get; set; }
    public DateTimeOffset? LastRunAt { get; set; }
    /// <summary>Filled from the schema documents when a response holds them; null otherwise.</summary>
    public List<SchemaDetails>? Schemas { get; set; }
    public JsonObject JobInputs { get; set; } = new();
    public bool SupportsWebhooks { get; set; }
    public bool SupportsColumnSelection { get; set; }
    public int Version { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public WebhookSummary? Webhook { get; set; }
    public CdcSummary? Cdc { get; set; }

    /// <summary>The source as the API shows it. Capability flags describe the source type as this build knows it,
    /// so they are read from <paramref name="type"/> rather than frozen into events.</summary>
    public static SourceDetails Of(Source source, ISourceType? type)
    {
        var cdc = source.Cdc is { } settings ? CdcSummary.From(settings) : null;
        return new SourceDetails
        {
            Id = source.Id,
            CreatedAt = source.CreatedAt,
            CreatedBy = source.CreatedBy,
            CreatedVia = source.CreatedVia,
            SourceType = source.SourceType,
            Prefix = source.Prefix,
            Description = source.Description,
            AccessMethod = source.AccessMethod,
            DirectQueryEnabled = source.DirectQueryEnabled,
            Engine = source.Engine,
            JobInputs = CdcSummary.WithKeys((JsonObject)source.JobInputs.DeepClone(), cdc),
            SupportsWebhooks = type?.Definition.Capabilities.Webhooks ?? false,
            SupportsColumnSelection = type?.Definition.Capabilities.ColumnSelection ?? false,
            Version = source.Version,
            UpdatedAt = source.UpdatedAt,
            Webhook = source.WebhookShown,
            Cdc = cdc,
        };
    }

    public static SourceDetails Of(Source source, SourceTypeRegistry registry) =>
        Of(source, registry.TryGet(source.SourceType, out var type) ? type : null);

    public SourceDetails WithSchemas(IEnumerable<SchemaDetails>? schemas)
    {
        Schemas = schemas?.ToList();
        return this;
    }
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
