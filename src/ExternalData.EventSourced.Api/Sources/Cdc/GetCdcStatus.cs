using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>Live CDC health (ref §5.7 plus API.md §6). <c>lag_bytes</c> is PostHog's (from confirmed_flush_lsn);
/// <c>retained_wal_bytes</c> (from restart_lsn) is what the server really keeps, and what <c>level</c> judges: a
/// long transaction can hold restart_lsn far behind while lag looks small, and it is retained WAL that fills a disk.</summary>
public sealed record CdcStatusResult(bool Enabled);

public sealed record CdcStatusDetails(
    bool Enabled,
    string ManagementMode,
    string SlotName,
    string PublicationName,
    int LagWarningThresholdMb,
    int LagCriticalThresholdMb,
    bool SlotExists,
    bool PublicationExists,
    long? LagBytes,
    IReadOnlyList<string> PublishedTables,
    IReadOnlyList<string> SelectedTables,
    long? RetainedWalBytes,
    string? WalStatus,
    long? SafeWalSize,
    bool? Active,
    int? ActivePid,
    string? InvalidationReason,
    string Level);

public static class CdcStatusQuery
{
    public const string Ok = "ok", Warning = "warning", Critical = "critical";

    public static async Task<Checked<object>> ReadAsync(Guid sourceId, IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        var source = await session.LoadAsync<Source>(sourceId, ct);
        if (source is null) return Problems.NotFound();
        if (registry.Get(source.SourceType) is not IChangeDataCapture cdc) return CdcOptions.Unsupported(source.SourceType);
        if (source.Cdc is not { } settings) return new CdcStatusResult(false);

        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        var health = await cdc.ReadHealthAsync(config, settings.Resources, ct);
        if (health.Value is not { } h)
            return Problems.Validation($"Could not connect to source to read CDC status: {health.Unreachable?.Message ?? health.Error}", null, health.Unreachable?.Code ?? "cdc_status_failed");
        var selected = (await CdcTables.EnabledAsync(session, sourceId, ct)).Select(t => cdc.QualifiedTable(config, t)).Order(StringComparer.Ordinal).ToList();
        return new CdcStatusDetails(true, settings.ManagementMode, settings.SlotName, settings.PublicationName, settings.LagWarningThresholdMb,
            settings.LagCriticalThresholdMb, h.SlotExists, h.PublicationExists, h.LagBytes, h.PublishedTables, selected, h.RetainedWalBytes, h.WalStatus,
            h.SafeWalSize, h.Active, h.ActivePid, h.InvalidationReason, Level(h, settings));
    }

    /// <summary>Critical when the slot is gone or its WAL lost, or retained WAL reaches the critical threshold; warning
    /// when it reaches the warning one (or the server stopped reserving WAL for it).</summary>
    public static string Level(CdcHealth h, CdcSettings s)
    {
        if (!h.SlotExists || h.WalStatus == "lost" || h.InvalidationReason is not null) return Critical;
        var retained = Math.Max(h.RetainedWalBytes ?? 0, h.LagBytes ?? 0);
        if (retained >= s.LagCriticalThresholdMb * 1024L * 1024L) return Critical;
        if (retained >= s.LagWarningThresholdMb * 1024L * 1024L || h.WalStatus == "unreserved") return Warning;
        return Ok;
    }
}

public static class GetCdcStatusEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/{id}/cdc_status")]
    [ProducesResponseType<CdcStatusDetails>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(Guid id, IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        var outcome = await CdcStatusQuery.ReadAsync(id, session, registry, cipher, ct);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
