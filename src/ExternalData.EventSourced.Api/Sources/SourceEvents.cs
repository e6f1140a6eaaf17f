using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

// The facts of a source's life, all in the source's one stream so an auditor replays it whole. Each carries the
// stream id, the actor, the channel and the time. Secrets appear only as SealedSecrets (AES-GCM under the source's
// data key). Each event is sized by what it says: a source-level change never repeats the source's tables, so a
// write on a source of 5,000 tables costs what it costs on one of 2 (ADR 0016). Every event is an IDomainEvent and is
// folded by Source's own methods or listed in Source.EventsThatChangeNothing: a unit test holds both (ADR 0035).

/// <summary>A source was connected: its checked configuration. Its tables follow as one <see cref="SchemaAdded"/>
/// each, appended in the same transaction.</summary>
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
    int TableCount,
    Actor CreatedBy,
    string CreatedVia,
    DateTimeOffset CreatedAt) : IDomainEvent;

/// <summary>One upstream table became a schema of the source: what discovery saw of it and the sync settings it
/// starts with (requested ones enabled, the rest recorded disabled).</summary>
public sealed record SchemaAdded(
    Guid SourceId,
    Guid SchemaId,
    string Name,
    TableFacts Facts,
    SyncSettings Settings,
    Actor AddedBy,
    string AddedVia,
    DateTimeOffset AddedAt) : IDomainEvent;

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
    string UpdatedVia,
    DateTimeOffset UpdatedAt) : IDomainEvent;

/// <summary>Several tables' sync settings changed together, atomically: each changed schema's resulting settings and
/// the fields that changed. Discovered facts are not repeated.</summary>
public sealed record SchemasBulkUpdated(
    Guid SourceId,
    IReadOnlyList<SchemaSettingsChange> Schemas,
    IReadOnlyList<string> ChangedFields,
    Actor UpdatedBy,
    string UpdatedVia,
    DateTimeOffset UpdatedAt) : IDomainEvent;

public sealed record SchemaSettingsChange(Guid SchemaId, string Name, SyncSettings Settings, IReadOnlyList<string> ChangedFields);

/// <summary>
/// The source was rediscovered and its schemas reconciled with what is there now (ref §7.3). New tables arrive as
/// <see cref="SchemaAdded"/> events in the same transaction (named here in <see cref="Added"/>); this event names
/// the rest: tables revived, removed (never enabled), disabled (enabled but gone), tables whose discovered facts
/// changed, and the columns that appeared or vanished in enabled tables (schema drift).
/// </summary>
public sealed record SchemasRefreshed(
    Guid SourceId,
    IReadOnlyList<string> Added,
    IReadOnlyList<RevivedSchema> Revived,
    IReadOnlyList<SchemaRef> Removed,
    IReadOnlyList<SchemaRef> Disabled,
    IReadOnlyList<RefreshedFacts> FactsChanged,
    IReadOnlyList<ColumnDrift> ColumnDrift,
    int TotalTablesSeen,
    Actor RefreshedBy,
    string RefreshedVia,
    DateTimeOffset RefreshedAt) : IDomainEvent;

public sealed record SchemaRef(Guid SchemaId, string Name);

public sealed record RevivedSchema(Guid SchemaId, string Name, TableFacts Facts);

public sealed record RefreshedFacts(Guid SchemaId, string Name, TableFacts Facts);

public sealed record ColumnDrift(Guid SchemaId, string Name, IReadOnlyList<string> Appeared, IReadOnlyList<string> Vanished);

/// <summary>A source was deleted (soft: the stream stays readable). Its data key was destroyed with it, unless
/// <see cref="CleanupPending"/>: then resources on the source (a CDC slot and publication) are removed first, with
/// the source's own credentials, and <see cref="SourceSecretsShredded"/> follows. Events recorded before this field
/// existed read it as false, which is what they meant.</summary>
public sealed record SourceDeleted(Guid SourceId, Actor DeletedBy, string DeletedVia, DateTimeOffset DeletedAt, bool CleanupPending = false) : IDomainEvent;

/// <summary>The deleted source's data key was destroyed, after its clean-up: every secret it stored is unreadable.</summary>
public sealed record SourceSecretsShredded(Guid SourceId, Actor CausedBy, string Via, DateTimeOffset ShreddedAt) : IDomainEvent;

/// <summary>What a caller chose for one table (ref §2.2, §2.3).</summary>
public sealed record SyncSettings(
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
    JsonArray? RowFilters)
{
    public static readonly SyncSettings Disabled = new(false, null, null, null, null, null, null, null, null, null, null);
}

/// <summary>What discovery said of a table when it was last seen: label, description, columns and capabilities.</summary>
public sealed record TableFacts(string? Label, string? Description, IReadOnlyList<AvailableColumn> Columns, DiscoveryFacts Capabilities);

public sealed record AvailableColumn(string Name, string DataType, bool IsNullable);

public sealed record DiscoveryFacts(
    bool SupportsIncremental,
    bool SupportsAppend,
    bool SupportsCdc,
    bool SupportsWebhooks,
    bool WebhookOnly,
    IReadOnlyList<string>? DetectedPrimaryKeys,
    long? RowEstimate);
