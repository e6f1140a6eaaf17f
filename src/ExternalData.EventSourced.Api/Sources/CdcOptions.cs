using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Microsoft.AspNetCore.Mvc;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>What a caller asks of CDC, on create (<c>payload.cdc_*</c>) or enable (the body), checked in PostHog's words
/// (ref §10.3, §10.5).</summary>
public sealed record CdcChoice(string Mode, string? SlotName, string? PublicationName, bool AutoDropSlot, int WarningMb, int CriticalMb)
{
    /// <summary>The names this source's CDC uses: the caller's, else PostHog's defaults for the source id.</summary>
    public CdcResources ResourcesFor(IChangeDataCapture cdc, Guid sourceId) => new(
        Mode,
        SlotName ?? cdc.DefaultSlotName(sourceId),
        PublicationName ?? cdc.DefaultPublicationName(sourceId, Mode),
        DefaultNames: SlotName is null && PublicationName is null);
}

public static partial class CdcOptions
{
    /// <summary>PostHog's refusal for a source type without CDC (ref §5.7, §5.8, §10.5).</summary>
    public static ProblemDetails Unsupported(string sourceType, string? attr = null) =>
        Problems.Validation($"CDC is not supported for source type: {sourceType}", attr, "cdc_not_supported");

    public static (CdcChoice? Choice, ProblemDetails? Problem) Parse(JsonObject body, string? attrPrefix = null)
    {
        var mode = CdcModes.Parse(SchemaRules.Text(body, "cdc_management_mode"));
        if (mode is null) return Fail(CdcModes.InvalidText, "cdc_management_mode", "invalid_choice");

        var slot = SchemaRules.Text(body, "cdc_slot_name");
        if (slot is not null && !Name().IsMatch(slot))
            return Fail("cdc_slot_name may contain only lower-case letters, digits and underscores, at most 63 characters.", "cdc_slot_name", "invalid_name");
        var publication = SchemaRules.Text(body, "cdc_publication_name");
        if (publication is not null && !Name().IsMatch(publication))
            return Fail("cdc_publication_name may contain only lower-case letters, digits and underscores, at most 63 characters.", "cdc_publication_name", "invalid_name");

        var autoDrop = true;
        if (body["cdc_auto_drop_slot"] is { } autoDropNode)
        {
            if (autoDropNode is not JsonValue v || v.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
                return Fail("cdc_auto_drop_slot must be a boolean.", "cdc_auto_drop_slot", "invalid");
            autoDrop = v.GetValue<bool>();
        }

        var (warning, warningProblem) = Threshold(body, "cdc_lag_warning_threshold_mb", CdcSettings.DefaultWarningMb);
        if (warningProblem is not null) return (null, Prefixed(warningProblem));
        var (critical, criticalProblem) = Threshold(body, "cdc_lag_critical_threshold_mb", CdcSettings.DefaultCriticalMb);
        if (criticalProblem is not null) return (null, Prefixed(criticalProblem));
        if (warning >= critical) return Fail("Warning threshold must be less than critical threshold.", "cdc_lag_warning_threshold_mb", "invalid_threshold");
        return (new CdcChoice(mode, slot, publication, autoDrop, warning, critical), null);

        (CdcChoice?, ProblemDetails?) Fail(string detail, string field, string code) => (null, Problems.Validation(detail, Attr(field), code));
        ProblemDetails Prefixed(ProblemDetails p) { p.Extensions["attr"] = Attr((string)p.Extensions["attr"]!); return p; }
        string Attr(string field) => attrPrefix is null ? field : $"{attrPrefix}.{field}";
    }

    /// <summary>A threshold in MB: an integer ≥ 1 (ref §10.5), or the default when absent.</summary>
    public static (int Value, ProblemDetails? Problem) Threshold(JsonObject body, string field, int fallback)
    {
        if (!body.TryGetPropertyValue(field, out var node) || node is null) return (fallback, null);
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<int>(out var value))
            return (0, Problems.Validation($"{field} must be an integer.", field, "invalid_integer"));
        return value < 1 ? (0, Problems.Validation($"{field} must be >= 1.", field, "min_value")) : (value, null);
    }

    public static bool Requested(JsonObject payload) =>
        payload["cdc_enabled"] is JsonValue v && v.GetValueKind() == JsonValueKind.True;

    [GeneratedRegex("^[a-z0-9_]{1,63}$")]
    private static partial Regex Name();
}

/// <summary>Turning CDC on, shared by create (<c>payload.cdc_enabled</c>) and enable: the provisioning I/O, then the
/// decision both record.</summary>
public static class CdcSetup
{
    /// <summary>Prerequisites, then the slot and publication. On success an undo step is registered with the running
    /// use case, so a later failure (refusal, lost race, failed commit) leaves nothing on the source. Create uses it too.</summary>
    public static async Task<Checked<CdcProvisioning>> ProvisionAsync(
        IChangeDataCapture cdc, JsonObject config, CdcChoice choice, Guid sourceId, IReadOnlyList<string> tables, ILogger logger, CancellationToken ct)
    {
        var resources = choice.ResourcesFor(cdc, sourceId);
        var report = await cdc.CheckPrerequisitesAsync(config,
            new CdcCheckRequest(choice.Mode, tables, choice.SlotName, choice.Mode == CdcModes.SelfManaged ? resources.PublicationName : choice.PublicationName), ct);
        if (report.Unreachable is { } unreachable)
            return Problems.Validation($"Could not connect to source to check prerequisites: {unreachable.Message}", null, unreachable.Code ?? "connection_failed");
        if (!report.Valid) return CdcPrerequisiteChecks.NotMet(report);

        var outcome = await cdc.ProvisionAsync(config, resources, tables, ct);
        if (outcome.Unreachable is { } down)
            return Problems.Validation($"Could not connect to your database to set up change data capture: {down.Message}", null, down.Code ?? "connection_failed");
        if (outcome.Error is { } error) return Problems.Validation(error, null, "cdc_setup_failed");

        var provisioning = outcome.Value!;
        Compensations.OnFailure(async () =>
        {
            var released = await cdc.ReleaseAsync(config, provisioning, CancellationToken.None);
            if (released.Value is null)
                logger.LogError("Could not remove the CDC slot {Slot} and publication {Publication} of a change that failed: {Error}. Remove them with: {Sql}",
                    provisioning.SlotName, provisioning.PublicationName, released.Error ?? released.Unreachable?.Message,
                    cdc.RemovalSql(new CdcResources(provisioning.Mode, provisioning.SlotName, provisioning.PublicationName, false), provisioning.SlotCreated, provisioning.PublicationCreated));
        });
        return provisioning;
    }

    /// <summary>The decision that CDC is on, as create and enable both record it.</summary>
    public static CdcEnabled Enabled(Guid sourceId, CdcChoice choice, CdcProvisioning p, Caller caller, DateTimeOffset now) => new(
        sourceId, p.Mode, p.SlotName, p.PublicationName, p.ConsistentPoint, p.SlotCreated, p.PublicationCreated, p.PublishedTables,
        choice.AutoDropSlot, choice.WarningMb, choice.CriticalMb, caller.Actor, caller.Channel, now);
}
