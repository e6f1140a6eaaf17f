using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using FluentValidation;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>PATCH external_data_sources/{id}/ (API.md §3 row 4, ref §5.4). Absent fields stay as they are.</summary>
public sealed record UpdateSource(
    string? Prefix,
    string? Description,
    bool? DirectQueryEnabled,
    JsonObject? JobInputs,
    string? AccessMethod,
    string? SourceType,
    string? CreatedVia) : ICommand
{
    [JsonIgnore] public Guid SourceId { get; init; }
    /// <summary>The caller's If-Match: the version its change was based on. Null: the caller asked for no check.</summary>
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;

    // Wolverine logs a failed message with its ToString(): job_inputs may hold secrets, so they are never printed.
    public override string ToString() => $"UpdateSource {{ SourceId = {SourceId}, ExpectedVersion = {ExpectedVersion}, Caller = {Caller} }}";

    public sealed class Validator : AbstractValidator<UpdateSource>
    {
        public Validator()
        {
            RuleFor(x => x.Prefix).MaximumLength(100).WithMessage("Ensure this field has no more than 100 characters.").WithErrorCode("max_length");
            RuleFor(x => x.Description).MaximumLength(400).WithMessage("Ensure this field has no more than 400 characters.").WithErrorCode("max_length");
        }
    }
}

/// <summary>The checked outcome of a PATCH's config part. A direct source whose connection changed is rediscovered
/// (ref §5.4 step 4): <see cref="Rediscovered"/> holds what that changes.</summary>
public sealed record SourceChange(
    JsonObject PublicConfig, SealedSecrets? NewSecrets, DataKey? NewDataKey, bool ConfigChanged, Reconciliation? Rediscovered = null);

/// <summary>The update use case, whichever channel calls it.</summary>
public static class UpdateSourceHandler
{
    public const string ReentryText = "Changing the connection host requires re-entering your credentials.";

    /// <summary>Runs after the source's stream is locked for this write (see <see cref="Handle"/>), so what it reads
    /// is what the decision will be appended on top of.</summary>
    public static async Task<Checked<SourceChange>> LoadAsync(
        UpdateSource command, Source? source, IValidator<UpdateSource> validator, IDocumentSession session, SourceTypeRegistry registry,
        SecretsCipher cipher, DateTimeOffset now, CancellationToken ct)
    {
        if (source is null) return Problems.NotFound();
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return stale;
        if (await Validation.CheckAsync(validator, command, ct) is { } invalid) return invalid;

        if (command.AccessMethod is not null && command.AccessMethod != source.AccessMethod)
            return Problems.Validation("Access method cannot be changed. Create a new source instead.", "access_method", "immutable_field");
        if (command.SourceType is not null && command.SourceType != source.SourceType)
            return Problems.Validation("Source type cannot be changed. Create a new source instead.", "source_type", "immutable_field");
        if (source.IsDirect && command.Prefix is not null && SourcePrefix.CheckDirectName(command.Prefix) is { } nameProblem)
            return nameProblem;
        if (!source.IsDirect && command.Prefix is not null && NullIfEmpty(command.Prefix) != source.Prefix)
            return Problems.Validation("Prefix cannot be changed on warehouse sources.", "prefix", "immutable_field");

        if (command.JobInputs is null) return new SourceChange(source.JobInputs, null, null, false);

        var type = registry.Get(source.SourceType);
        var schema = type.Definition.Config;
        var masked = schema.MaskedPlaceholders(command.JobInputs);
        if (masked.Count > 0)
        {
            return Problems.Validation($"'{masked[0]}' holds a masked placeholder, not a secret. Send the real value, or leave the field out to keep the stored one.",
                $"job_inputs.{masked[0]}", "masked_secret");
        }

        var (stored, dataKey) = await StoredConfig.LoadWithKeyAsync(source, session, cipher, ct);
        var merged = schema.Merge(stored, command.JobInputs);

        if (CarriesSecretsToNewTarget(type.Definition, stored, merged, command.JobInputs))
            return Problems.Validation(ReentryText, "job_inputs", "credentials_reentry_required");

        var (config, configProblem) = SourceConfigGate.Validate(type, merged, "job_inputs");
        if (configProblem is not null) return configProblem;
        if (await SourceConfigGate.CheckCredentialsAsync(type, config!, ct) is { } credentials) return credentials;

        Reconciliation? rediscovered = null;
        if (source.IsDirect)
        {
            var rediscovery = await SchemaReconciliation.RediscoverAsync(type, config!, source.Id, session, ct);
            if (rediscovery.Problem is { } discoveryProblem) return discoveryProblem;
            rediscovered = rediscovery.Value;
        }

        var (publicConfig, secrets) = schema.Split(config!);
        if (secrets.Count == 0) return new SourceChange(publicConfig, null, null, true, rediscovered);

        DataKey? newDataKey = null;
        if (dataKey is null) (newDataKey, dataKey) = cipher.NewDataKey(source.Id, now);
        return new SourceChange(publicConfig, cipher.Seal(secrets, dataKey, source.Id), newDataKey, true, rediscovered);
    }

    /// <summary>
    /// The decision: which fields change, as one event. Returns the source as it will read afterwards (its own
    /// fields; the schemas are not touched, so they are not read). The stream is fetched for exclusive writing:
    /// concurrent writes to one source queue behind each other instead of failing (API.md §1.3).
    /// </summary>
    public static (Checked<SourceDetails>, Events, IMartenOp) Handle(
        UpdateSource command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source,
        Checked<SourceChange> checkedChange, DateTimeOffset now, SourceTypeRegistry registry)
    {
        if (checkedChange.Problem is { } problem) return (problem, [], MartenOps.Nothing());
        var change = checkedChange.Value!;
        var updated = Decide(command, source!, change, now);
        IMartenOp storeKey = change.NewDataKey is null || updated is null ? MartenOps.Nothing() : MartenOps.Store(change.NewDataKey);
        if (updated is null) return (SourceDetails.Of(source!, registry), [], storeKey);
        // The rediscovered tables land in the same transaction as the connection change that revealed them.
        var rediscovered = change.Rediscovered is { } r ? SchemaReconciliation.Events(source!.Id, r, command.Caller, now) : [];
        Events events = [updated, .. rediscovered];
        return (SourceDetails.Of(source!.Folded(events), registry), events, storeKey);
    }

    /// <summary>Which fields change, as one event; null when nothing does.</summary>
    public static SourceUpdated? Decide(UpdateSource command, Source source, SourceChange change, DateTimeOffset now)
    {
        var prefix = source.IsDirect && command.Prefix is not null ? command.Prefix.Trim() : source.Prefix;
        var description = command.Description is null ? source.Description : NullIfEmpty(command.Description);
        var directQuery = command.DirectQueryEnabled ?? source.DirectQueryEnabled;

        var changed = new List<string>();
        if (prefix != source.Prefix) changed.Add("prefix");
        if (description != source.Description) changed.Add("description");
        if (directQuery != source.DirectQueryEnabled) changed.Add("direct_query_enabled");
        if (change.ConfigChanged) changed.Add("job_inputs");
        if (changed.Count == 0) return null;

        return new SourceUpdated(source.Id, changed, prefix, description, directQuery, change.PublicConfig, change.NewSecrets,
            command.Caller.Actor, command.Caller.Channel, now);
    }

    /// <summary>
    /// The anti-exfiltration rule (ref §5.4 step 3): pointing a source at a new target while silently carrying
    /// its stored secrets over would let anyone with write access send them to a server of their choosing.
    /// </summary>
    public static bool CarriesSecretsToNewTarget(SourceTypeDefinition type, JsonObject stored, JsonObject merged, JsonObject incoming)
    {
        var targetChanged = type.ConnectionTargetFields.Any(f => ConfigSchema.Lookup(stored, f) != ConfigSchema.Lookup(merged, f));
        if (!targetChanged) return false;
        return type.Config.SecretPaths()
            .Where(path => path != "connection_string")
            .Any(path => !string.IsNullOrEmpty(ConfigSchema.Lookup(stored, path)) && !ConfigSchema.Supplies(incoming, path));
    }

    private static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;
}

public static class UpdateSourceEndpoint
{
    /// <summary>200 with the whole source, every schema streamed after its own fields as a retrieve writes them: PostHog's
    /// answer (ref §4.1, §5.4), which its settings page reads the tables back from. The write itself touches no schema,
    /// so only the answer grows with the tables; <c>Prefer: return=minimal</c> leaves them out (ADR 0008).</summary>
    [WolverinePatch("/api/projects/{project_id}/external_data_sources/{id}")]
    [ProducesResponseType<SourceDetails>(StatusCodes.Status200OK)]
    public static async Task<IResult> Patch(string project_id, Guid id, UpdateSource command, HttpContext context, IMessageBus bus, IQuerySession session)
    {
        var outcome = await bus.RunAsync<SourceDetails>(
            command with { SourceId = id, ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem
            ? Results.Problem(problem)
            : SourceResponses.Source(outcome.Value!, withSchemas: !SourceResponses.PrefersMinimal(context), session);
    }
}
