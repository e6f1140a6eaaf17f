using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/{id}/update_cdc_settings/ (API.md §3 row 18, ref §10.5).</summary>
public sealed record UpdateCdcSettings(Guid SourceId, JsonObject Changes) : ICommand
{
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

public sealed record CdcSettingsResult(bool Success, [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? Unchanged = null);

public static class UpdateCdcSettingsHandler
{
    public const string NotEnabled = "CDC is not enabled on this source.";

    /// <summary>The decision is pure: the current settings and the body in, the event (or the refusal) out.</summary>
    public static (Checked<CdcSettingsResult>, Events) Handle(
        UpdateCdcSettings command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source, DateTimeOffset now)
    {
        var (changed, problem) = Decide(command, source, now);
        if (problem is not null) return (problem, []);
        return changed is null ? (new CdcSettingsResult(true, Unchanged: true), []) : (new CdcSettingsResult(true), [changed]);
    }

    public static (CdcSettingsChanged? Changed, ProblemDetails? Problem) Decide(UpdateCdcSettings command, Source? source, DateTimeOffset now)
    {
        if (source is null) return (null, Problems.NotFound());
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return (null, stale);
        if (source.Cdc is not { } current) return (null, Problems.Validation(NotEnabled, null, "cdc_not_enabled"));

        var body = command.Changes;
        var autoDrop = current.AutoDropSlot;
        if (body["cdc_auto_drop_slot"] is { } node)
        {
            if (node is not JsonValue v || v.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
                return (null, Problems.Validation("cdc_auto_drop_slot must be a boolean.", "cdc_auto_drop_slot", "invalid"));
            autoDrop = v.GetValue<bool>();
        }

        var (warning, warningProblem) = CdcOptions.Threshold(body, "cdc_lag_warning_threshold_mb", current.LagWarningThresholdMb);
        if (warningProblem is not null) return (null, warningProblem);
        var (critical, criticalProblem) = CdcOptions.Threshold(body, "cdc_lag_critical_threshold_mb", current.LagCriticalThresholdMb);
        if (criticalProblem is not null) return (null, criticalProblem);
        if (warning >= critical)
            return (null, Problems.Validation("Warning threshold must be less than critical threshold.", "cdc_lag_warning_threshold_mb", "invalid_threshold"));

        var fields = new List<string>();
        if (autoDrop != current.AutoDropSlot) fields.Add("cdc_auto_drop_slot");
        if (warning != current.LagWarningThresholdMb) fields.Add("cdc_lag_warning_threshold_mb");
        if (critical != current.LagCriticalThresholdMb) fields.Add("cdc_lag_critical_threshold_mb");
        if (fields.Count == 0) return (null, null);
        return (new CdcSettingsChanged(source.Id, fields, autoDrop, warning, critical, command.Caller.Actor, command.Caller.Channel, now), null);
    }
}

public static class UpdateCdcSettingsEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/update_cdc_settings")]
    [ProducesResponseType<CdcSettingsResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, JsonObject body, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<CdcSettingsResult>(
            new UpdateCdcSettings(id, body) { ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
