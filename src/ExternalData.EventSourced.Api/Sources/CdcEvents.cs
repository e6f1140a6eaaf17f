using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

// The facts of a source's change data capture, in the source's own stream. Each names the slot and publication it
// concerns, so an auditor can tell from the history alone what exists on the customer's database.

/// <summary>CDC was turned on: the slot and publication (created now, or adopted), the slot's consistent point (the
/// LSN the first snapshot starts from), the tables published, and the health thresholds.</summary>
public sealed record CdcEnabled(
    Guid SourceId,
    string ManagementMode,
    string SlotName,
    string PublicationName,
    string ConsistentPoint,
    bool SlotCreated,
    bool PublicationCreated,
    IReadOnlyList<string> PublishedTables,
    bool AutoDropSlot,
    int LagWarningThresholdMb,
    int LagCriticalThresholdMb,
    Actor EnabledBy,
    string EnabledVia,
    DateTimeOffset EnabledAt) : IDomainEvent;

/// <summary>CDC was turned off: what happened to the slot and publication on the source (dropped, already gone, or
/// left with the SQL to remove them), and the CDC schemas that went back to "not set up" and disabled.</summary>
public sealed record CdcDisabled(
    Guid SourceId,
    string SlotName,
    string PublicationName,
    bool SlotDropped,
    bool PublicationDropped,
    string? CleanupError,
    string? RemediationSql,
    IReadOnlyList<SchemaRef> SchemasReset,
    Actor DisabledBy,
    string DisabledVia,
    DateTimeOffset DisabledAt) : IDomainEvent;

/// <summary>CDC's own settings changed (ref §10.5): the resulting values and which changed.</summary>
public sealed record CdcSettingsChanged(
    Guid SourceId,
    IReadOnlyList<string> ChangedFields,
    bool AutoDropSlot,
    int LagWarningThresholdMb,
    int LagCriticalThresholdMb,
    Actor ChangedBy,
    string ChangedVia,
    DateTimeOffset ChangedAt) : IDomainEvent;

/// <summary>Tables joined or left the managed publication because CDC schemas were enabled or disabled.</summary>
public sealed record CdcPublicationTablesChanged(
    Guid SourceId,
    string PublicationName,
    IReadOnlyList<string> Added,
    IReadOnlyList<string> Dropped,
    Actor ChangedBy,
    string ChangedVia,
    DateTimeOffset ChangedAt) : IDomainEvent;

/// <summary>The CDC consumer applied the source's changes up to <see cref="Position"/> (committed to the warehouse, then
/// acknowledged to the slot): coalesced, at most one per source per interval, never one per change. In the source's CDC
/// stream (<see cref="CdcStreams.For"/>), not the source's own: streaming never bumps a source's version.</summary>
public sealed record CdcChangesApplied(
    Guid SourceId, string Position, long Changes, long Transactions, IReadOnlyDictionary<string, long> ChangesByTable,
    DateTimeOffset Since, DateTimeOffset AppliedAt, Actor RecordedBy, string RecordedVia) : ISyncFact;

/// <summary>The CDC consumer could not stream, for a reason that stays until someone acts (the slot or publication gone):
/// what to do is in <see cref="Error"/>. Recorded once per distinct failure.</summary>
public sealed record CdcStreamFailed(Guid SourceId, string Error, string ErrorClass, DateTimeOffset FailedAt, Actor RecordedBy, string RecordedVia) : ISyncFact;

public static class CdcStreams
{
    /// <summary>The stream of a source's CDC progress: an id derived from the source's, stable across nodes.</summary>
    public static Guid For(Guid sourceId)
    {
        var bytes = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes($"cdc-stream:{sourceId:N}"));
        return new Guid(bytes.AsSpan(0, 16));
    }
}

/// <summary>CDC's state on a source, as the deciders and reads need it.</summary>
public sealed record CdcSettings(
    string ManagementMode,
    string SlotName,
    string PublicationName,
    string ConsistentPoint,
    bool AutoDropSlot,
    int LagWarningThresholdMb,
    int LagCriticalThresholdMb,
    DateTimeOffset EnabledAt)
{
    public const int DefaultWarningMb = 1024;
    public const int DefaultCriticalMb = 10240;

    public bool Managed => ManagementMode == SourceTypes.ChangeDataCapture.CdcModes.Managed;

    public static CdcSettings From(CdcEnabled e) => new(e.ManagementMode, e.SlotName, e.PublicationName, e.ConsistentPoint, e.AutoDropSlot,
        e.LagWarningThresholdMb, e.LagCriticalThresholdMb, e.EnabledAt);

    public CdcSettings With(CdcSettingsChanged e) => this with
    {
        AutoDropSlot = e.AutoDropSlot, LagWarningThresholdMb = e.LagWarningThresholdMb, LagCriticalThresholdMb = e.LagCriticalThresholdMb,
    };

    public SourceTypes.ChangeDataCapture.CdcResources Resources => new(ManagementMode, SlotName, PublicationName, DefaultNames: false);
}
