using System.Text.Json.Nodes;
using JasperFx.Events;
using Marten.Events.Aggregation;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// The Source as list and retrieve return it (API.md §4, ref §4.1). Secrets never reach this document: it is
/// built from the public half of the config only.
/// </summary>
public sealed class SourceDetails
{
    public Guid Id { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public string? CreatedBy { get; set; }
    public string? CreatedVia { get; set; }
    public string Status { get; set; } = "Running";
    public string SourceType { get; set; } = "";
    public string? LatestError { get; set; }
    public string? Prefix { get; set; }
    public string? Description { get; set; }
    public string AccessMethod { get; set; } = AccessMethods.Warehouse;
    public bool DirectQueryEnabled { get; set; }
    public string? Engine { get; set; }
    public DateTimeOffset? LastRunAt { get; set; }
    public List<SchemaDetails> Schemas { get; set; } = [];
    public JsonObject JobInputs { get; set; } = new();
    public bool SupportsWebhooks { get; set; }
    public bool SupportsColumnSelection { get; set; }
    public int Version { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public object? Webhook { get; set; }
    public object? Cdc { get; set; }

    /// <summary>"SourceType:prefix" for warehouse sources, null for direct ones: a unique index on it (per project)
    /// holds the prefix rule even when two creates race past the check.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? WarehousePrefixKey => AccessMethod == AccessMethods.Warehouse ? $"{SourceType}:{Prefix}" : null;
}

/// <summary>A schema (one upstream table) as the API shows it (ref §4.2).</summary>
public sealed class SchemaDetails
{
    public Guid Id { get; set; }
    public string Name { get; set; } = "";
    public string? Label { get; set; }
    // No sync engine exists yet, so no warehouse table either.
    public object? Table { get; set; }
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
    public List<AvailableColumnDetails> AvailableColumns { get; set; } = [];

    public static SchemaDetails From(SchemaSettings s) => new()
    {
        Id = s.Id,
        Name = s.Name,
        Label = s.Label,
        ShouldSync = s.ShouldSync,
        Incremental = s.SyncType == SyncTypes.Incremental,
        SyncType = s.SyncType,
        IncrementalField = s.IncrementalField,
        IncrementalFieldType = s.IncrementalFieldType,
        IncrementalFieldLookbackSeconds = s.IncrementalFieldLookbackSeconds,
        SyncFrequency = s.SyncFrequency,
        SyncTimeOfDay = s.SyncTimeOfDay,
        Description = s.Description,
        PrimaryKeyColumns = s.PrimaryKeyColumns?.ToList(),
        CdcTableMode = s.CdcTableMode ?? "consolidated",
        EnabledColumns = s.EnabledColumns?.ToList(),
        RowFilters = (JsonArray?)s.RowFilters?.DeepClone(),
        AvailableColumns = s.AvailableColumns.Select(c => new AvailableColumnDetails(c.Name, c.DataType, c.IsNullable)).ToList(),
    };
}

public sealed record AvailableColumnDetails(string Name, string DataType, bool IsNullable);

/// <summary>
/// Inline, so a read right after a write sees it. Deletion removes the document; the event stream keeps the
/// history, and <c>?as_of=</c> replays it.
/// </summary>
public sealed partial class SourceDetailsProjection : SingleStreamProjection<SourceDetails, Guid>
{
    public static SourceDetails Create(IEvent<SourceCreated> @event)
    {
        var e = @event.Data;
        var details = new SourceDetails
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
            Schemas = e.Schemas.OrderBy(s => s.Name, StringComparer.Ordinal).Select(SchemaDetails.From).ToList(),
            Version = (int)@event.Version,
            UpdatedAt = e.CreatedAt,
        };
        details.Status = SourceStatus.Derive(details.Schemas, storedStatus: "Running");
        details.LatestError = details.Schemas.FirstOrDefault(s => s.LatestError is not null)?.LatestError;
        return details;
    }

    public static void Apply(IEvent<SourceUpdated> @event, SourceDetails details)
    {
        var e = @event.Data;
        details.Prefix = e.Prefix;
        details.Description = e.Description;
        details.DirectQueryEnabled = e.DirectQueryEnabled;
        details.JobInputs = (JsonObject)e.JobInputs.DeepClone();
        details.Version = (int)@event.Version;
        details.UpdatedAt = e.UpdatedAt;
    }

    public static void Apply(IEvent<SchemasBulkUpdated> @event, SourceDetails details)
    {
        var changed = @event.Data.Schemas.ToDictionary(s => s.Id, SchemaDetails.From);
        details.Schemas = details.Schemas.Select(s => changed.GetValueOrDefault(s.Id, s)).ToList();
        details.Status = SourceStatus.Derive(details.Schemas, storedStatus: "Running");
        details.LatestError = details.Schemas.FirstOrDefault(s => s.LatestError is not null)?.LatestError;
        details.Version = (int)@event.Version;
        details.UpdatedAt = @event.Data.UpdatedAt;
    }

    public static bool ShouldDelete(SourceDeleted e) => true;
}

/// <summary>The source status PostHog derives from its schemas (ref §4.1).</summary>
public static class SourceStatus
{
    public static string Derive(IReadOnlyList<SchemaDetails> schemas, string storedStatus)
    {
        var active = schemas.Where(s => s.ShouldSync || s.LatestError is not null).ToList();
        var syncing = active.Where(s => s.ShouldSync).ToList();
        if (syncing.Any(s => s.Status == "Failed")) return "Failed";
        if (syncing.Any(s => s.Status == "BillingLimitReached")) return "Billing limits";
        if (syncing.Any(s => s.Status == "BillingLimitTooLow")) return "Billing limits too low";
        if (active.Any(s => s.Status == "Paused")) return "Paused";
        if (active.Any(s => s.Status == "Running")) return "Running";
        if (active.Any(s => s.Status == "Completed")) return "Completed";
        return storedStatus;
    }
}
