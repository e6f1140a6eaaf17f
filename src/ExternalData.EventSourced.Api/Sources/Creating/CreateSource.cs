using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using FluentValidation;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/ (API.md §3 row 2, ref §5.2).</summary>
public sealed record CreateSource(
    string? SourceType,
    JsonObject? Payload,
    string? Prefix,
    string? Description,
    string? AccessMethod,
    string? CreatedVia,
    bool? DirectQueryEnabled) : ICommand
{
    [JsonIgnore] public Caller Caller { get; init; } = null!;

    // Wolverine logs a failed message with its ToString(): the payload holds secrets, so it is never printed.
    public override string ToString() => $"CreateSource {{ SourceType = {SourceType}, Prefix = {Prefix}, AccessMethod = {AccessMethod}, Caller = {Caller} }}";

    public sealed class Validator : AbstractValidator<CreateSource>
    {
        public Validator()
        {
            RuleFor(x => x.SourceType).NotEmpty().WithMessage("This field is required.").WithErrorCode("required");
            RuleFor(x => x.Payload).NotNull().WithMessage("This field is required.").WithErrorCode("required");
            RuleFor(x => x.Prefix).MaximumLength(100).WithMessage("Ensure this field has no more than 100 characters.").WithErrorCode("max_length");
            RuleFor(x => x.Description).MaximumLength(400).WithMessage("Ensure this field has no more than 400 characters.").WithErrorCode("max_length");
            RuleFor(x => x.AccessMethod).Must(v => v is null || AccessMethods.All.Contains(v))
                .WithMessage(x => $"\"{x.AccessMethod}\" is not a valid choice.").WithErrorCode("invalid_choice");
            RuleFor(x => x.CreatedVia).Must(v => v is null || Channel.Requestable.Contains(v))
                .WithMessage(x => $"\"{x.CreatedVia}\" is not a valid choice.").WithErrorCode("invalid_choice");
        }
    }
}

/// <summary>Everything the create decision needs, gathered and checked by <see cref="CreateSourceHandler.LoadAsync"/>.</summary>
public sealed record NewSource(
    Guid Id,
    ISourceType Type,
    string AccessMethod,
    string? Prefix,
    JsonObject PublicConfig,
    SealedSecrets? Secrets,
    DataKey? DataKey,
    IReadOnlyList<NewSchema> Schemas,
    CdcChoice? CdcChoice = null,
    CdcProvisioning? Cdc = null);

/// <summary>The create use case, whichever channel calls it.</summary>
public static class CreateSourceHandler
{
    /// <summary>
    /// The gate, in PostHog's order: request rules, mode and prefix rules, the config and a live credential check,
    /// discovery, then the requested tables. Nothing is stored unless every step passes, so a failure leaves no trace.
    /// </summary>
    public static async Task<Checked<NewSource>> LoadAsync(
        CreateSource command, IValidator<CreateSource> validator, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher,
        ILogger<CreateSource> logger, DateTimeOffset now, CancellationToken ct)
    {
        if (await Validation.CheckAsync(validator, command, ct) is { } invalid) return invalid;
        if (!registry.TryGet(command.SourceType, out var type))
            return Problems.Validation($"\"{command.SourceType}\" is not a valid choice.", "source_type", "invalid_choice");

        var accessMethod = command.AccessMethod ?? AccessMethods.Warehouse;
        var direct = accessMethod == AccessMethods.Direct;
        var prefix = string.IsNullOrEmpty(command.Prefix) ? null : command.Prefix;
        if (direct)
        {
            if (!type.Definition.Capabilities.DirectQuery)
                return Problems.Validation("Direct query mode is currently supported only for Postgres, MySQL, and Snowflake sources.", "access_method", "direct_query_not_supported");
            if (SourcePrefix.CheckDirectName(prefix) is { } nameProblem) return nameProblem;
            prefix = prefix!.Trim();
        }
        else
        {
            if (SourcePrefix.CheckCharacters(prefix) is { } characters) return characters;
            if (SourcePrefix.CheckAvailable(prefix, await SourcePrefix.InUseAsync(session, type.Definition.Name, ct)) is { } taken) return taken;
        }

        var payload = command.Payload!;
        var cdcRequested = CdcOptions.Requested(payload);
        CdcChoice? cdcChoice = null;
        if (cdcRequested)
        {
            if (type is not IChangeDataCapture) return CdcOptions.Unsupported(type.Definition.Name, "payload.cdc_enabled");
            if (direct)
                return Problems.Validation("CDC is not available for direct query sources: they query the database live.", "payload.cdc_enabled", "cdc_not_supported");
            var (choice, cdcProblem) = CdcOptions.Parse(payload, attrPrefix: "payload");
            if (cdcProblem is not null) return cdcProblem;
            cdcChoice = choice;
        }

        var (config, configProblem) = SourceConfigGate.Validate(type, payload);
        if (configProblem is not null) return configProblem;
        if (await SourceConfigGate.CheckCredentialsAsync(type, config!, ct) is { } credentials) return credentials;

        var discovery = await type.DiscoverAsync(config!, ct);
        if (!discovery.Check.Ok) return Problems.Validation(discovery.Check.Message!, null, discovery.Check.Code!);

        var (schemas, schemaProblem) = SchemaSelection.Build(payload["schemas"], discovery.Tables, direct, cdcEnabled: cdcRequested, Guid.CreateVersion7);
        if (schemaProblem is not null) return schemaProblem;

        // The id carries the creation time (UUIDv7), so ordering by id is ordering by age.
        var id = Guid.CreateVersion7(now);

        // Provisioning is the gate's last step: every rule that can refuse the create has passed, so only a failed
        // commit can still undo it, and the compensation registered by ProvisionAsync covers that (ADR 0025).
        CdcProvisioning? provisioning = null;
        if (cdcChoice is not null)
        {
            var cdc = (IChangeDataCapture)type;
            var tables = schemas!.Where(s => s.Settings is { ShouldSync: true, SyncType: SyncTypes.Cdc }).Select(s => cdc.QualifiedTable(config!, s.Name)).ToList();
            var provisioned = await CdcSetup.ProvisionAsync(cdc, config!, cdcChoice, id, tables, logger, ct);
            if (provisioned.Problem is not null) return provisioned.Problem;
            provisioning = provisioned.Value;
        }

        var (publicConfig, secrets) = type.Definition.Config.Split(config!);
        if (secrets.Count == 0) return new NewSource(id, type, accessMethod, prefix, publicConfig, null, null, schemas!, cdcChoice, provisioning);

        var (dataKey, key) = cipher.NewDataKey(id, now);
        return new NewSource(id, type, accessMethod, prefix, publicConfig, cipher.Seal(secrets, key, id), dataKey, schemas!, cdcChoice, provisioning);
    }

    /// <summary>The decision: a pure function of the command and the checked draft. The stream starts with the
    /// source and one event per table; starting it and storing the data key are returned as side effects, so both
    /// commit in one transaction, with the message that starts the enabled tables' first runs (SYNC.md §5).</summary>
    public static (Checked<SourceDetails>, IMartenOp, IMartenOp, OutgoingMessages) Handle(CreateSource command, Checked<NewSource> draft, DateTimeOffset now)
    {
        if (draft.Problem is { } problem) return (problem, MartenOps.Nothing(), MartenOps.Nothing(), []);
        var source = draft.Value!;
        var (created, tables) = Decide(command, source, now);
        var cdc = source.Cdc is { } p ? CdcSetup.Enabled(source.Id, source.CdcChoice!, p, command.Caller, now) : null;
        object[] events = cdc is null ? [created, .. tables] : [created, .. tables, cdc];
        return (Answer(source, created, tables, cdc), MartenOps.StartStream<Source>(created.SourceId, events), StoreKey(source), FirstRuns(command.Caller, tables));
    }

    /// <summary>The enabled tables of a new source get their first run within seconds (the scheduler decides which run).</summary>
    public static OutgoingMessages FirstRuns(Caller caller, IReadOnlyList<SchemaAdded> tables) =>
        SyncScheduler.Arm(caller.ProjectId, tables.Select(t => t.SourceId).FirstOrDefault(), tables.Where(t => t.Settings.ShouldSync).Select(t => t.SchemaId));

    public static (SourceCreated Created, IReadOnlyList<SchemaAdded> Tables) Decide(CreateSource command, NewSource source, DateTimeOffset now) =>
        Decide(source, command.Description, command.DirectQueryEnabled, command.Caller, command.CreatedVia ?? command.Caller.Channel, now);

    /// <summary>The source as a read will return it, folded from the new stream's events by the document's own methods.</summary>
    public static SourceDetails Answer(NewSource source, SourceCreated created, IReadOnlyList<SchemaAdded> tables, CdcEnabled? cdc = null)
    {
        object[] events = cdc is null ? [created, .. tables] : [created, .. tables, cdc];
        return SourceDetails.Of(Source.Started(events), source.Type)
            .WithSchemas(source.Schemas.OrderBy(s => s.Name, StringComparer.Ordinal).Select(s => s.ToDetails()));
    }

    public static IMartenOp StoreKey(NewSource source) => source.DataKey is null ? MartenOps.Nothing() : MartenOps.Store(source.DataKey);

    /// <summary>A new source's events: the source, then one per table. Setup starts sources this way too.</summary>
    public static (SourceCreated Created, IReadOnlyList<SchemaAdded> Tables) Decide(
        NewSource source, string? description, bool? directQueryEnabled, Caller caller, string channel, DateTimeOffset now)
    {
        var created = new SourceCreated(
            SourceId: source.Id,
            ProjectId: caller.ProjectId,
            SourceType: source.Type.Definition.Name,
            AccessMethod: source.AccessMethod,
            Prefix: source.Prefix,
            Description: string.IsNullOrEmpty(description) ? null : description,
            DirectQueryEnabled: directQueryEnabled ?? true,
            Engine: source.AccessMethod == AccessMethods.Direct ? source.Type.Definition.DirectQueryEngine : null,
            JobInputs: source.PublicConfig,
            Secrets: source.Secrets,
            TableCount: source.Schemas.Count,
            CreatedBy: caller.Actor,
            CreatedVia: channel,
            CreatedAt: now);
        var tables = source.Schemas
            .Select(s => new SchemaAdded(source.Id, s.Id, s.Name, s.Facts, s.Settings, caller.Actor, channel, now))
            .ToList();
        return (created, tables);
    }
}

public static class CreateSourceEndpoint
{
    /// <summary>REST is one channel of the use case: it names the caller and the project, then answers 201 with
    /// the full source and its Location, or the problem.</summary>
    [WolverinePost("/api/projects/{project_id}/external_data_sources")]
    [ProducesResponseType<SourceDetails>(StatusCodes.Status201Created)]
    public static async Task<IResult> Post(string project_id, CreateSource command, HttpContext context, IMessageBus bus, SourceTypeRegistry registry)
    {
        // PostHog lets a REST client say which channel it is (its MCP server sends created_via=mcp); the event body and
        // its metadata then both say so.
        var channel = command.CreatedVia is { } via && Channel.Requestable.Contains(via) ? via : Channel.Api;
        var outcome = await bus.RunAsync<SourceDetails>(command with { Caller = HttpCaller.From(context, project_id, channel) }, context.RequestAborted);
        if (outcome.Problem is { } problem) return Results.Problem(problem);
        return SourceResponses.Source(outcome.Value!, withSchemas: true, status: StatusCodes.Status201Created,
            location: $"{context.SourcesBasePath(project_id)}{outcome.Value!.Id}/");
    }
}
