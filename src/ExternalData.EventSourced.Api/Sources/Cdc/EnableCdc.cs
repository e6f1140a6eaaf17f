using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using JasperFx.Events;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/{id}/enable_cdc/ (API.md §3 row 18, ref §10.5). The body stays a JSON object:
/// its keys are PostHog's <c>cdc_*</c> options.</summary>
public sealed record EnableCdc(Guid SourceId, JsonObject Options) : ICommand
{
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

/// <summary>What enabling found and did, with the source's stream locked to record it.</summary>
public sealed record CdcActivation(IEventStream<Source> Stream, CdcChoice Choice, CdcProvisioning Provisioning);

/// <summary>PostHog's answer, plus [beyond] the CDC state it recorded.</summary>
public sealed record CdcEnabledResult(bool Success, bool SchedulesReady, CdcSummary Cdc);

public static class EnableCdcHandler
{
    public const string AlreadyEnabled = "CDC is already enabled on this source.";

    /// <summary>
    /// The gate: the source and its type, the options, the prerequisites (server-side, again), then provisioning on
    /// the customer's database. Only then is the source's stream locked: creating a logical slot waits for every
    /// transaction holding a transaction id on that server, so it must never wait on a lock this service holds
    /// (ADR 0025). Under the lock the state is judged again; if another enable won meanwhile, the compensation
    /// removes what this one made.
    /// </summary>
    public static async Task<Checked<CdcActivation>> LoadAsync(
        EnableCdc command, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher, ILogger<CdcActivation> logger, CancellationToken ct)
    {
        var source = await session.LoadAsync<Source>(command.SourceId, ct);
        if (source is null) return Problems.NotFound();
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return stale;
        if (registry.Get(source.SourceType) is not IChangeDataCapture cdc) return CdcOptions.Unsupported(source.SourceType);
        if (source.Cdc is not null) return Problems.Conflict(AlreadyEnabled, "cdc_already_enabled");
        var (choice, invalid) = CdcOptions.Parse(command.Options);
        if (invalid is not null) return invalid;

        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        var tables = (await CdcTables.EnabledAsync(session, source.Id, ct)).Select(t => cdc.QualifiedTable(config, t)).ToList();
        var provisioned = await CdcSetup.ProvisionAsync(cdc, config, choice!, source.Id, tables, logger, ct);
        if (provisioned.Problem is not null) return provisioned.Problem;

        var stream = await session.Events.FetchForExclusiveWriting<Source>(source.Id, ct);
        if (stream.Aggregate is null) return Problems.NotFound();
        if (stream.Aggregate.Cdc is not null) return Problems.Conflict(AlreadyEnabled, "cdc_already_enabled");
        if (IfMatch.Check(command.ExpectedVersion, stream.Aggregate.Version) is { } staleNow) return staleNow;
        return new CdcActivation(stream, choice!, provisioned.Value!);
    }

    public static (Checked<CdcEnabledResult>, IMartenOp) Handle(EnableCdc command, Checked<CdcActivation> activation, DateTimeOffset now)
    {
        if (activation.Problem is { } problem) return (problem, MartenOps.Nothing());
        var (stream, choice, provisioning) = activation.Value!;
        var enabled = CdcSetup.Enabled(command.SourceId, choice, provisioning, command.Caller, now);
        return (new CdcEnabledResult(true, false, CdcSummary.From(CdcSettings.From(enabled))), new AppendToLockedStream<Source>(stream, enabled));
    }

}

public static class EnableCdcEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/enable_cdc")]
    [ProducesResponseType<CdcEnabledResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, JsonObject body, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<CdcEnabledResult>(
            new EnableCdc(id, body) { ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
