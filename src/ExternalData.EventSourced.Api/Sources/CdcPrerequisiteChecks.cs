using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Marten;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Sources;

/// <summary>PostHog's answer (<c>valid</c>, <c>errors</c>) plus every check with what we saw and how to fix it (API.md §6).</summary>
public sealed record CdcPrerequisitesResult(bool Valid, IReadOnlyList<string> Errors, IReadOnlyList<CdcCheck> Checks)
{
    public static CdcPrerequisitesResult From(CdcCheckReport report) => new(report.Valid, report.Errors, report.Checks);
}

/// <summary>
/// POST external_data_sources/check_cdc_prerequisites/ (ref §5.11) and {id}/check_cdc_prerequisites_for_source/
/// (ref §5.8): may this database stream its changes? A probe: it stores nothing, so it is a query both REST and MCP call.
/// </summary>
public static class CdcPrerequisiteChecks
{
    public const string OnlyCdcSources = "CDC prerequisite checks are only supported for CDC enabled sources.";

    /// <summary>The pre-creation check: a flat body of <c>source_type</c>, the connection fields, <c>tables</c> and the
    /// CDC choices, in PostHog's order of refusals.</summary>
    public static async Task<Checked<CdcPrerequisitesResult>> ForConfigAsync(JsonObject body, SourceTypeRegistry registry, CancellationToken ct)
    {
        var sourceType = SchemaRules.Text(body, "source_type");
        if (!registry.TryGet(sourceType, out var type) || type is not IChangeDataCapture cdc)
            return Problems.Validation(OnlyCdcSources, "source_type", "cdc_not_supported");

        var config = (JsonObject)body.DeepClone();
        foreach (var key in new[] { "source_type", "tables", "cdc_management_mode", "cdc_slot_name", "cdc_publication_name" }) config.Remove(key);
        var (normalised, problem) = SourceConfigGate.Validate(type, config, attrPrefix: null);
        if (problem is not null) return problem;
        var mode = CdcModes.Parse(SchemaRules.Text(body, "cdc_management_mode"));
        if (mode is null) return Problems.Validation(CdcModes.InvalidText, "cdc_management_mode", "invalid_choice");
        if (!SchemaRules.TryStrings(body["tables"], out var tables)) return Problems.Validation("tables must be a list of table names.", "tables", "invalid");

        var request = new CdcCheckRequest(mode, tables, SchemaRules.Text(body, "cdc_slot_name"), SchemaRules.Text(body, "cdc_publication_name"));
        return Answer(await cdc.CheckPrerequisitesAsync(normalised!, request, ct), "Could not connect to Postgres to check prerequisites: ");
    }

    /// <summary>The same checks with a source's stored credentials. PostHog passes no tables; we check the source's
    /// CDC tables, or the <c>tables</c> the caller names.</summary>
    public static async Task<Checked<CdcPrerequisitesResult>> ForSourceAsync(
        Guid sourceId, JsonObject body, IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        var source = await session.LoadAsync<Source>(sourceId, ct);
        if (source is null) return Problems.NotFound();
        if (registry.Get(source.SourceType) is not IChangeDataCapture cdc) return CdcOptions.Unsupported(source.SourceType);
        var mode = CdcModes.Parse(SchemaRules.Text(body, "cdc_management_mode") ?? source.Cdc?.ManagementMode);
        if (mode is null) return Problems.Validation(CdcModes.InvalidText, "cdc_management_mode", "invalid_choice");
        if (!SchemaRules.TryStrings(body["tables"], out var named)) return Problems.Validation("tables must be a list of table names.", "tables", "invalid");

        var tables = named ?? await CdcTables.EnabledAsync(session, sourceId, ct);
        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        var request = new CdcCheckRequest(mode, tables,
            SchemaRules.Text(body, "cdc_slot_name") ?? source.Cdc?.SlotName,
            SchemaRules.Text(body, "cdc_publication_name") ?? (mode == CdcModes.SelfManaged ? source.Cdc?.PublicationName : null));
        return Answer(await cdc.CheckPrerequisitesAsync(config, request, ct), "Could not connect to source to check prerequisites: ");
    }

    /// <summary>An unreachable database is PostHog's 400 with its text; the checks (all skipped after the one that
    /// failed) ride along, so the caller still sees which step stopped it.</summary>
    public static Checked<CdcPrerequisitesResult> Answer(CdcCheckReport report, string unreachablePrefix)
    {
        if (report.Unreachable is not { } unreachable) return CdcPrerequisitesResult.From(report);
        var hostRefused = report.Checks[0].Status == CdcCheckStatus.Fail;
        var problem = Problems.Validation(hostRefused ? unreachable.Message! : unreachablePrefix + unreachable.Message, null, unreachable.Code ?? "connection_failed");
        problem.Extensions["valid"] = false;
        problem.Extensions["errors"] = report.Errors;
        problem.Extensions["checks"] = report.Checks;
        return problem;
    }

    /// <summary>"CDC prerequisites not met." with PostHog's error list, and our checks.</summary>
    public static ProblemDetails NotMet(CdcCheckReport report)
    {
        var problem = Problems.Validation("CDC prerequisites not met.", null, "cdc_prerequisites_not_met");
        problem.Extensions["errors"] = report.Errors;
        problem.Extensions["checks"] = report.Checks;
        return problem;
    }
}

/// <summary>The source tables CDC streams: the schemas set to sync with CDC.</summary>
public static class CdcTables
{
    public static async Task<IReadOnlyList<string>> EnabledAsync(IQuerySession session, Guid sourceId, CancellationToken ct) =>
        await session.Query<SourceSchema>()
            .Where(s => s.SourceId == sourceId && !s.Removed && s.Settings.ShouldSync && s.Settings.SyncType == SyncTypes.Cdc)
            .Select(s => s.Name).ToListAsync(ct);
}
