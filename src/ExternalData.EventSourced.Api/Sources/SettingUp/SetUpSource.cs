using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Credentials.Consuming;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using FluentValidation;
using JasperFx.Events;
using Marten;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/setup/ (API.md §3 row 8, ref §5.15, §7): one call from credentials to a
/// source with sensible defaults. <c>payload.credential_id</c> consumes a stash, so an agent never sees the secrets.</summary>
public sealed record SetUpSource(string? SourceType, JsonObject? Payload, string? Prefix, string? Description, bool? DirectQueryEnabled, JsonArray? Tables) : ICommand
{
    [JsonIgnore] public Caller Caller { get; init; } = null!;
    /// <summary>The address the caller reached us on: the webhook URL is built from it unless one is configured.</summary>
    [JsonIgnore] public string BaseUrl { get; init; } = "";

    // Wolverine logs a failed message with its ToString(): the payload may hold secrets, so it is never printed.
    public override string ToString() => $"SetUpSource {{ SourceType = {SourceType}, Prefix = {Prefix}, Caller = {Caller} }}";

    public sealed class Validator : AbstractValidator<SetUpSource>
    {
        public Validator()
        {
            RuleFor(x => x.SourceType).NotEmpty().WithMessage("This field is required.").WithErrorCode("required");
            RuleFor(x => x.Prefix).MaximumLength(100).WithMessage("Ensure this field has no more than 100 characters.").WithErrorCode("max_length");
            RuleFor(x => x.Description).MaximumLength(400).WithMessage("Ensure this field has no more than 400 characters.").WithErrorCode("max_length");
            RuleFor(x => x.Tables).Must(t => t is null || t.All(n => n is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0))
                .WithMessage("tables must be a list of table names.").WithErrorCode("invalid");
        }
    }
}

/// <summary>The checked setup: the new source, and the stash it consumes (locked for this write) if any.</summary>
public sealed record SourceSetup(NewSource Source, ClaimedStash? Stash, WebhookAttempt? Webhook = null);

/// <summary>201: the new source's id, the webhook attempt for webhook-capable sources (ref §12.3), and [beyond] the full source.</summary>
public sealed record SetUpSourceResult(
    Guid Id, SourceDetails Source, [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] WebhookResult? Webhook = null);

public static class SetUpSourceHandler
{
    public const string NoTables = "No tables found for this source. Check the credentials and permissions.";

    /// <summary>
    /// PostHog's order (ref §5.15): request rules, the stash (locked, so two setups cannot both consume it; stored
    /// values win over inline ones), the config and live-credential gate, discovery, the default schemas, then the
    /// create rules. Nothing is stored on failure, and the stash stays usable.
    /// </summary>
    public static async Task<Checked<SourceSetup>> LoadAsync(
        SetUpSource command, IValidator<SetUpSource> validator, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher,
        PublicUrls urls, ILogger<SetUpSource> logger, TimeProvider clock, CancellationToken ct)
    {
        if (await Validation.CheckAsync(validator, command, ct) is { } invalid) return invalid;
        if (!registry.TryGet(command.SourceType, out var type))
            return Problems.Validation($"\"{command.SourceType}\" is not a valid choice.", "source_type", "invalid_choice");

        var now = clock.GetUtcNow();
        var payload = (JsonObject?)command.Payload?.DeepClone() ?? [];
        ClaimedStash? stash = null;
        if (payload.ContainsKey("credential_id"))
        {
            var claim = await StashConsumption.ClaimAsync(payload["credential_id"], type.Definition.Name, "payload.credential_id", session, cipher, now, ct);
            if (claim.Problem is { } stashProblem) return stashProblem;
            stash = claim.Value!;
            payload.Remove("credential_id");
            foreach (var (field, value) in stash.Values) payload[field] = value?.DeepClone();
        }

        var (config, configProblem) = SourceConfigGate.Validate(type, payload);
        if (configProblem is not null) return configProblem;
        if (await SourceConfigGate.CheckCredentialsAsync(type, config!, ct) is { } credentials) return credentials;

        var discovery = await type.DiscoverAsync(config!, ct);
        if (!discovery.Check.Ok) return Problems.Validation(discovery.Check.Message!, null, discovery.Check.Code!);
        if (discovery.Tables.Count == 0) return Problems.Validation(NoTables, null, "no_tables");

        var chosen = command.Tables?.Select(t => t!.GetValue<string>()).ToHashSet(StringComparer.Ordinal);
        if (chosen?.FirstOrDefault(name => discovery.Tables.All(t => t.Name != name)) is { } unknown)
            return Problems.Validation($"Table '{unknown}' was not found in the source. Discovered tables: see database_schema.", "tables", "unknown_table");

        var prefix = string.IsNullOrEmpty(command.Prefix) ? null : command.Prefix;
        if (SourcePrefix.CheckCharacters(prefix) is { } characters) return characters;
        if (SourcePrefix.CheckAvailable(prefix, await SourcePrefix.InUseAsync(session, type.Definition.Name, ct)) is { } taken) return taken;

        var schemas = discovery.Tables.Select(t => new NewSchema(Guid.CreateVersion7(), t.Name, SchemaSelection.FactsOf(t),
            chosen is null || chosen.Contains(t.Name) ? SyncTypeRules.DefaultFor(t) : SyncSettings.Disabled with { SyncFrequency = SchemaSelection.DefaultFrequency })).ToList();

        var id = Guid.CreateVersion7(now);
        var (publicConfig, secrets) = type.Definition.Config.Split(config!);
        if (secrets.Count == 0) return new SourceSetup(new NewSource(id, type, AccessMethods.Warehouse, prefix, publicConfig, null, null, schemas), stash);
        var (sourceKey, key) = cipher.NewDataKey(id, now);
        var newSource = new NewSource(id, type, AccessMethods.Warehouse, prefix, publicConfig, cipher.Seal(secrets, key, id), sourceKey, schemas);

        // Webhook-capable sources go real-time where they can (ref §12.3); a provider refusal keeps the polling defaults.
        WebhookAttempt? webhook = null;
        if (type is SourceTypes.Webhooks.IWebhookProvider provider && schemas.Any(s => s.Facts.Capabilities.SupportsWebhooks))
        {
            var switches = WebhookRegistrations.Switches(schemas.Select(s => (s.Id, s.Name, s.Facts.Capabilities, s.Settings, false)));
            webhook = await WebhookRegistrations.AttemptAsync(provider, config!, key, id, urls.WebhookUrl(command.BaseUrl, id), switches,
                schemas.Where(s => s.Facts.Capabilities.SupportsWebhooks).Select(s => s.Name), null, cipher, logger, ct);
        }

        return new SourceSetup(newSource, stash, webhook);
    }

    /// <summary>The source starts and the stash is consumed (its key destroyed) in the same transaction: a setup
    /// that fails leaves the stash usable, one that succeeds can never be repeated with it.</summary>
    public static (Checked<SetUpSourceResult>, IMartenOp, IMartenOp, IMartenOp, IMartenOp, OutgoingMessages) Handle(SetUpSource command, Checked<SourceSetup> setup, TimeProvider clock)
    {
        if (setup.Problem is { } problem) return (problem, MartenOps.Nothing(), MartenOps.Nothing(), MartenOps.Nothing(), MartenOps.Nothing(), []);
        var now = clock.GetUtcNow();
        var (source, stash, webhook) = setup.Value!;
        var (created, tables) = CreateSourceHandler.Decide(source, command.Description, command.DirectQueryEnabled, command.Caller, command.Caller.Channel, now);
        var (webhookResult, webhookEvents) = webhook is null ? (null, []) : WebhookRegistrations.Decide(source.Id, webhook, command.Caller, now);
        // The answer is the read model the events will produce, folded by its own pure methods.
        var details = SourceAsOf.Fold([.. new object[] { created }.Concat(tables).Concat(webhookEvents).Select((e, i) => EventFold<Source>.Wrap(e, i + 1))], source.Type)!;
        // The stash is spent in the source's own transaction, exactly once: the Credentials slice says how.
        IMartenOp[] spend = stash is null ? [MartenOps.Nothing(), MartenOps.Nothing()] : StashConsumption.Consume(stash, source.Id, command.Caller, now);
        return (new SetUpSourceResult(source.Id, details, webhookResult), MartenOps.StartStream<Source>(source.Id, [created, .. tables, .. webhookEvents]),
            CreateSourceHandler.StoreKey(source), spend[0], spend[1], CreateSourceHandler.FirstRuns(command.Caller, tables));
    }
}

public static class SetUpSourceEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/setup")]
    [ProducesResponseType<SetUpSourceResult>(StatusCodes.Status201Created)]
    public static async Task<IResult> Post(string project_id, SetUpSource command, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<SetUpSourceResult>(
            command with { Caller = HttpCaller.From(context, project_id), BaseUrl = $"{context.Request.Scheme}://{context.Request.Host}" }, context.RequestAborted);
        if (outcome.Problem is { } problem) return Results.Problem(problem);
        return Results.Json(outcome.Value, statusCode: StatusCodes.Status201Created);
    }
}
