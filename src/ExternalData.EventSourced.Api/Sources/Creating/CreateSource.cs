using System.Security.Claims;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using FluentValidation;
using Marten;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/ (API.md §3 row 2, ref §5.2).</summary>
public sealed record CreateSource(
    string? SourceType,
    JsonObject? Payload,
    string? Prefix,
    string? Description,
    string? AccessMethod,
    string? CreatedVia,
    bool? DirectQueryEnabled)
{
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
            RuleFor(x => x.CreatedVia).Must(v => v is null || v is Channel.Api or Channel.Mcp or Channel.Web)
                .WithMessage(x => $"\"{x.CreatedVia}\" is not a valid choice.").WithErrorCode("invalid_choice");
        }
    }
}

/// <summary>Everything the create decision needs, gathered and checked by <see cref="CreateSourceEndpoint.LoadAsync"/>.</summary>
public sealed record NewSource(
    Guid Id,
    ISourceType Type,
    string AccessMethod,
    string? Prefix,
    JsonObject PublicConfig,
    SealedSecrets? Secrets,
    DataKey? DataKey,
    IReadOnlyList<SchemaSettings> Schemas);

public static class CreateSourceEndpoint
{
    /// <summary>
    /// The gate, in PostHog's order: mode and prefix rules, the config and a live credential check, discovery,
    /// then the requested tables. Nothing is stored unless every step passes, so a failure leaves no trace.
    /// </summary>
    public static async Task<Checked<NewSource>> LoadAsync(
        CreateSource command, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
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
        if (payload["cdc_enabled"] is JsonValue cdc && cdc.TryGetValue<bool>(out var cdcEnabled) && cdcEnabled)
        {
            return Problems.Validation("Change data capture cannot be turned on when creating a source yet. Create the source with incremental, append or full refresh sync.",
                "payload.cdc_enabled", "cdc_not_available");
        }

        var (config, configProblem) = SourceConfigGate.Validate(type, payload);
        if (configProblem is not null) return configProblem;
        if (await SourceConfigGate.CheckCredentialsAsync(type, config!, ct) is { } credentials) return credentials;

        var discovery = await type.DiscoverAsync(config!, ct);
        if (!discovery.Check.Ok) return Problems.Validation(discovery.Check.Message!, null, discovery.Check.Code!);

        var (schemas, schemaProblem) = SchemaSelection.Build(payload["schemas"], discovery.Tables, direct, cdcEnabled: false, Guid.CreateVersion7);
        if (schemaProblem is not null) return schemaProblem;

        var id = Guid.CreateVersion7();
        var (publicConfig, secrets) = type.Definition.Config.Split(config!);
        if (secrets.Count == 0) return new NewSource(id, type, accessMethod, prefix, publicConfig, null, null, schemas!);

        var (dataKey, key) = cipher.NewDataKey(id, DateTimeOffset.UtcNow);
        return new NewSource(id, type, accessMethod, prefix, publicConfig, cipher.Seal(secrets, key, id), dataKey, schemas!);
    }

    public static ProblemDetails Validate(Checked<NewSource> draft) => draft.Problem ?? WolverineContinue.NoProblems;

    /// <summary>The decision: a pure function of the command and the checked draft. Starting the stream and
    /// storing the data key are returned as side effects, so both commit in one transaction.</summary>
    [WolverinePost("/api/projects/{project_id}/external_data_sources")]
    public static (Created<SourceDetails>, IStartStream, IMartenOp) Post(
        string project_id, CreateSource command, Checked<NewSource> draft, ClaimsPrincipal user, DateTimeOffset now, HttpContext context)
    {
        var source = draft.Value!;
        var created = new SourceCreated(
            SourceId: source.Id,
            ProjectId: project_id,
            SourceType: source.Type.Definition.Name,
            AccessMethod: source.AccessMethod,
            Prefix: source.Prefix,
            Description: string.IsNullOrEmpty(command.Description) ? null : command.Description,
            DirectQueryEnabled: command.DirectQueryEnabled ?? true,
            Engine: source.AccessMethod == AccessMethods.Direct ? source.Type.Definition.DirectQueryEngine : null,
            JobInputs: source.PublicConfig,
            Secrets: source.Secrets,
            Schemas: source.Schemas,
            CreatedBy: Actor.From(user),
            CreatedVia: command.CreatedVia ?? Channel.Api,
            CreatedAt: now);

        var details = SourceDetailsProjection.Create(new JasperFx.Events.Event<SourceCreated>(created) { Version = 1 }).WithCapabilitiesOf(source.Type);
        var location = $"{context.SourcesBasePath(project_id)}{source.Id}/";
        IMartenOp storeKey = source.DataKey is null ? MartenOps.Nothing() : MartenOps.Store(source.DataKey);
        return (TypedResults.Created(location, details), MartenOps.StartStream<Source>(source.Id, created), storeKey);
    }
}
