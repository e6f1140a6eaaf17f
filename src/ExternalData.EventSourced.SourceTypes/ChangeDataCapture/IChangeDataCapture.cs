using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.SourceTypes.ChangeDataCapture;

/// <summary>
/// A source type that can stream changes (logical replication for Postgres): its prerequisite checks, the slot and
/// publication it provisions and removes, and their live health. Knows nothing of events; the use cases record what
/// these calls did.
/// </summary>
public interface IChangeDataCapture
{
    /// <summary>The slot a source's CDC uses when the caller names none (PostHog's naming, ref §10.3).</summary>
    string DefaultSlotName(Guid sourceId);

    /// <summary>The publication a source's CDC uses when the caller names none, in <paramref name="mode"/>.</summary>
    string DefaultPublicationName(Guid sourceId, string mode);

    /// <summary>Every check runs and reports (no early stop); a check that cannot run says why it was skipped.</summary>
    Task<CdcCheckReport> CheckPrerequisitesAsync(JsonObject config, CdcCheckRequest request, CancellationToken ct);

    /// <summary>Creates (or, with default names, adopts) what the mode needs, publishing <paramref name="tables"/>.
    /// A failure part-way removes what this call created.</summary>
    Task<CdcOutcome<CdcProvisioning>> ProvisionAsync(JsonObject config, CdcResources resources, IReadOnlyList<string> tables, CancellationToken ct);

    /// <summary>Undoes a provisioning that was not recorded (the transaction that should have recorded it failed).</summary>
    Task<CdcOutcome<CdcRemoval>> ReleaseAsync(JsonObject config, CdcProvisioning provisioning, CancellationToken ct);

    /// <summary>Adds and drops tables of a managed publication; a table already in (or already out) is a no-op.</summary>
    Task<CdcOutcome<CdcPublicationChange>> ChangePublicationAsync(
        JsonObject config, string publication, IReadOnlyList<string> add, IReadOnlyList<string> drop, CancellationToken ct);

    /// <summary>Drops the slot when <paramref name="dropSlot"/> and the publication when <paramref name="dropPublication"/>.
    /// Missing ones count as gone.</summary>
    Task<CdcOutcome<CdcRemoval>> RemoveAsync(JsonObject config, CdcResources resources, bool dropSlot, bool dropPublication, CancellationToken ct);

    Task<CdcOutcome<CdcHealth>> ReadHealthAsync(JsonObject config, CdcResources resources, CancellationToken ct);

    /// <summary>The SQL a person runs on the source to remove what we could not.</summary>
    string RemovalSql(CdcResources resources, bool dropSlot, bool dropPublication);

    /// <summary>The table name as the CDC catalog calls it (<c>schema.table</c>), for a source schema's name.</summary>
    string QualifiedTable(JsonObject config, string schemaName);
}

public static class CdcModes
{
    /// <summary>We own publication and slot. PostHog calls this mode "posthog"; "managed" is accepted as its name too.</summary>
    public const string Managed = "posthog";
    public const string SelfManaged = "self_managed";
    public const string InvalidText = "cdc_management_mode must be 'posthog' or 'self_managed'.";

    /// <summary>The canonical mode for what a caller sent (absent = managed), or null when it is not a mode.</summary>
    public static string? Parse(string? value) => value switch
    {
        null or "" or Managed or "managed" => Managed,
        SelfManaged => SelfManaged,
        _ => null,
    };
}

/// <summary>What to check: the mode, the tables (bare or <c>schema.table</c>; none skips the table checks), and the
/// slot and publication names when the caller chose them.</summary>
public sealed record CdcCheckRequest(string Mode, IReadOnlyList<string>? Tables, string? SlotName, string? PublicationName);

public static class CdcCheckStatus
{
    public const string Pass = "pass";
    public const string Fail = "fail";
    public const string Warn = "warn";
    public const string Skip = "skip";
}

/// <summary>One prerequisite: what we saw, what it must be, and, when it is not, the exact SQL or setting to apply.</summary>
public sealed record CdcCheck(string Id, string Status, string? Observed, string? Expected, string Message, string? Remediation);

/// <summary>All checks, and PostHog's error texts for the failed ones. <see cref="Unreachable"/> is set when the
/// host was refused or the database could not be reached: every later check is then skipped.</summary>
public sealed record CdcCheckReport(IReadOnlyList<CdcCheck> Checks, IReadOnlyList<string> Errors, SourceCheck? Unreachable)
{
    public bool Valid => Unreachable is null && Errors.Count == 0;
}

/// <summary>The slot and publication a source's CDC uses. <see cref="DefaultNames"/>: neither was chosen by the
/// caller, so existing ones may be adopted (ref §10.3).</summary>
public sealed record CdcResources(string Mode, string SlotName, string PublicationName, bool DefaultNames);

/// <summary>What a provisioning did: the names, the slot's consistent point (LSN), and which of the two it created
/// (as opposed to adopted), so a rollback removes only those.</summary>
public sealed record CdcProvisioning(
    string Mode, string SlotName, string PublicationName, string ConsistentPoint, bool SlotCreated, bool PublicationCreated, IReadOnlyList<string> PublishedTables);

public sealed record CdcPublicationChange(IReadOnlyList<string> Added, IReadOnlyList<string> Dropped);

/// <summary>What a removal found and did: each resource dropped now, or already gone.</summary>
public sealed record CdcRemoval(bool SlotDropped, bool SlotWasMissing, bool PublicationDropped, bool PublicationWasMissing);

/// <summary>The live state of the slot and publication (ref §5.7, cdc-and-stripe.md §1 health).</summary>
public sealed record CdcHealth(
    bool SlotExists,
    bool PublicationExists,
    long? LagBytes,
    long? RetainedWalBytes,
    string? WalStatus,
    long? SafeWalSize,
    bool? Active,
    int? ActivePid,
    string? InvalidationReason,
    IReadOnlyList<string> PublishedTables);

/// <summary>A CDC operation's result: the value, or the database could not be reached (<see cref="Unreachable"/>),
/// or it refused the operation (<see cref="Error"/>, a sentence for the caller).</summary>
public sealed record CdcOutcome<T>(T? Value, SourceCheck? Unreachable = null, string? Error = null) where T : class
{
    public static CdcOutcome<T> Ok(T value) => new(value);
    public static CdcOutcome<T> CannotConnect(SourceCheck problem) => new(null, problem);
    public static CdcOutcome<T> Refused(string error) => new(null, null, error);
}
