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
        var provisioned = await ProvisionAsync(cdc, config, choice!, source.Id, tables, logger, ct);
        if (provisioned.Problem is not null) return provisioned.Problem;

        var stream = await session.Events.FetchForExclusiveWriting<Source>(source.Id, ct);
        if (stream.Aggregate is null) return Problems.NotFound();
        if (stream.Aggregate.Cdc is not null) return Problems.Conflict(AlreadyEnabled, "cdc_already_enabled");
        if (IfMatch.Check(command.ExpectedVersion, stream.Aggregate.Version) is { } staleNow) return staleNow;
        return new CdcActivation(stream, choice!, provisioned.Value!);
    }

    /// <summary>Prerequisites, then the slot and publication. On success an undo step is registered with the running
    /// use case, so a later failure (refusal, lost race, failed commit) leaves nothing on the source. Create uses it too.</summary>
    public static async Task<Checked<CdcProvisioning>> ProvisionAsync(
        IChangeDataCapture cdc, JsonObject config, CdcChoice choice, Guid sourceId, IReadOnlyList<string> tables, ILogger logger, CancellationToken ct)
    {
        var resources = choice.ResourcesFor(sourceId);
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

    public static (Checked<CdcEnabledResult>, IMartenOp) Handle(EnableCdc command, Checked<CdcActivation> activation, DateTimeOffset now)
    {
        if (activation.Problem is { } problem) return (problem, MartenOps.Nothing());
        var (stream, choice, provisioning) = activation.Value!;
        var enabled = Decide(command.SourceId, choice, provisioning, command.Caller, now);
        return (new CdcEnabledResult(true, false, CdcSummary.From(CdcSettings.From(enabled))), new AppendToLockedStream<Source>(stream, enabled));
    }

    public static CdcEnabled Decide(Guid sourceId, CdcChoice choice, CdcProvisioning p, Caller caller, DateTimeOffset now) => new(
        sourceId, p.Mode, p.SlotName, p.PublicationName, p.ConsistentPoint, p.SlotCreated, p.PublicationCreated, p.PublishedTables,
        choice.AutoDropSlot, choice.WarningMb, choice.CriticalMb, caller.Actor, caller.Channel, now);
}

public static class EnableCdcEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/enable_cdc")]
    [ProducesResponseType<CdcEnabledResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, JsonObject body, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<CdcEnabledResult>(
            new EnableCdc(id, body) { ExpectedVersion = IfMatch.Version(context), Caller = Caller.FromHttp(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
