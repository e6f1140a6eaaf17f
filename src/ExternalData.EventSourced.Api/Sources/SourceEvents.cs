using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;

namespace ExternalData.EventSourced.Sources;

// The facts of a source's life. Each carries the stream id, the actor and the time, so a source's history
// reads on its own. Secrets appear only as SealedSecrets (AES-GCM under the source's data key).

/// <summary>A source was connected: its checked configuration and the tables chosen for syncing.</summary>
public sealed record SourceCreated(
    Guid SourceId,
    string ProjectId,
    string SourceType,
    string AccessMethod,
    string? Prefix,
    string? Description,
    bool DirectQueryEnabled,
    string? Engine,
    JsonObject JobInputs,
    SealedSecrets? Secrets,
    IReadOnlyList<SchemaSettings> Schemas,
    Actor CreatedBy,
    string CreatedVia,
    DateTimeOffset CreatedAt);

/// <summary>A source's settings changed. Carries the resulting values and names what changed;
/// <see cref="Secrets"/> is null when the secrets were kept as they were.</summary>
public sealed record SourceUpdated(
    Guid SourceId,
    IReadOnlyList<string> ChangedFields,
    string? Prefix,
    string? Description,
    bool DirectQueryEnabled,
    JsonObject JobInputs,
    SealedSecrets? Secrets,
    Actor UpdatedBy,
    DateTimeOffset UpdatedAt);

/// <summary>Several tables' sync settings changed together, atomically. Carries each changed schema's resulting
/// settings and the names of the fields that changed.</summary>
public sealed record SchemasBulkUpdated(
    Guid SourceId,
    IReadOnlyList<SchemaSettings> Schemas,
    IReadOnlyList<string> ChangedFields,
    Actor UpdatedBy,
    DateTimeOffset UpdatedAt);

/// <summary>A source was deleted (soft: the stream stays readable). Its data key was destroyed with it.</summary>
public sealed record SourceDeleted(Guid SourceId, Actor DeletedBy, DateTimeOffset DeletedAt);

/// <summary>One upstream table's sync settings, with the discovery facts later rules need (ref §2.2, §5.21).</summary>
public sealed record SchemaSettings(
    Guid Id,
    string Name,
    string? Label,
    string? Description,
    bool ShouldSync,
    string? SyncType,
    string? IncrementalField,
    string? IncrementalFieldType,
    int? IncrementalFieldLookbackSeconds,
    IReadOnlyList<string>? PrimaryKeyColumns,
    string? SyncFrequency,
    string? SyncTimeOfDay,
    string? CdcTableMode,
    IReadOnlyList<string>? EnabledColumns,
    JsonArray? RowFilters,
    IReadOnlyList<AvailableColumn> AvailableColumns,
    DiscoveryFacts Discovery);

public sealed record AvailableColumn(string Name, string DataType, bool IsNullable);

/// <summary>What discovery said of a table when it was last seen.</summary>
public sealed record DiscoveryFacts(
    bool SupportsIncremental,
    bool SupportsAppend,
    bool SupportsCdc,
    bool SupportsWebhooks,
    bool WebhookOnly,
    IReadOnlyList<string>? DetectedPrimaryKeys,
    long? RowEstimate);
