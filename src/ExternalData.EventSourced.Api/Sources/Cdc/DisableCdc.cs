using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/{id}/disable_cdc/ (API.md §3 row 18, ref §10.5).</summary>
public sealed record DisableCdc(Guid SourceId) : ICommand
{
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

/// <summary>What turning CDC off did on the source, and the CDC schemas to reset. Null <see cref="Settings"/>: it was off.</summary>
public sealed record CdcDeactivation(CdcSettings? Settings, CdcRemoval? Removal, string? CleanupError, string? RemediationSql, IReadOnlyList<SchemaRef> Schemas);

/// <summary>PostHog's answer; [beyond] what happened to the slot and publication, and the SQL to run when we could not remove them.</summary>
public sealed record CdcDisabledResult(
    bool Success,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? AlreadyDisabled = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? SlotDropped = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? PublicationDropped = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? CleanupError = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? RemediationSql = null);

public static class DisableCdcHandler
{
    /// <summary>Drops the slot (and, in managed mode, the publication) best-effort, as PostHog does: an unreachable
    /// database does not keep CDC on; the event records that the resources stayed and the SQL that removes them.</summary>
    public static async Task<Checked<CdcDeactivation>> LoadAsync(
        DisableCdc command, Source? source, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        if (source is null) return Problems.NotFound();
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return stale;
        if (registry.Get(source.SourceType) is not IChangeDataCapture cdc) return CdcOptions.Unsupported(source.SourceType);
        if (source.Cdc is not { } settings) return new CdcDeactivation(null, null, null, null, []);

        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        var removed = await cdc.RemoveAsync(config, settings.Resources, dropSlot: true, dropPublication: settings.Managed, ct);
        var error = removed.Unreachable?.Message ?? removed.Error;
        var schemas = await session.Query<SourceSchema>()
            .Where(s => s.SourceId == source.Id && s.Settings.SyncType == SyncTypes.Cdc)
            .Select(s => new SchemaRef(s.Id, s.Name)).ToListAsync(ct);
        return new CdcDeactivation(settings, removed.Value, error, error is null ? null : cdc.RemovalSql(settings.Resources, true, settings.Managed), schemas);
    }

    public static (Checked<CdcDisabledResult>, Events) Handle(
        DisableCdc command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source, Checked<CdcDeactivation> deactivation, DateTimeOffset now)
    {
        if (deactivation.Problem is { } problem) return (problem, []);
        var d = deactivation.Value!;
        if (d.Settings is null) return (new CdcDisabledResult(true, AlreadyDisabled: true), []);
        var disabled = new CdcDisabled(command.SourceId, d.Settings.SlotName, d.Settings.PublicationName,
            SlotDropped: d.Removal?.SlotDropped ?? false, PublicationDropped: d.Removal?.PublicationDropped ?? false,
            d.CleanupError, d.RemediationSql, d.Schemas, command.Caller.Actor, command.Caller.Channel, now);
        return (new CdcDisabledResult(true, null, disabled.SlotDropped, disabled.PublicationDropped, d.CleanupError, d.RemediationSql), [disabled]);
    }
}

public static class DisableCdcEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/disable_cdc")]
    [ProducesResponseType<CdcDisabledResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<CdcDisabledResult>(
            new DisableCdc(id) { ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
