using System.Security.Claims;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using FluentValidation;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Sources;

/// <summary>PATCH external_data_sources/{id}/ (API.md §3 row 4, ref §5.4). Absent fields stay as they are.</summary>
public sealed record UpdateSource(
    string? Prefix,
    string? Description,
    bool? DirectQueryEnabled,
    JsonObject? JobInputs,
    string? AccessMethod,
    string? SourceType,
    string? CreatedVia)
{
    public sealed class Validator : AbstractValidator<UpdateSource>
    {
        public Validator()
        {
            RuleFor(x => x.Prefix).MaximumLength(100).WithMessage("Ensure this field has no more than 100 characters.").WithErrorCode("max_length");
            RuleFor(x => x.Description).MaximumLength(400).WithMessage("Ensure this field has no more than 400 characters.").WithErrorCode("max_length");
        }
    }
}

/// <summary>The checked outcome of a PATCH's config part, and the read model it will be applied to.</summary>
public sealed record SourceChange(JsonObject PublicConfig, SealedSecrets? NewSecrets, DataKey? NewDataKey, bool ConfigChanged, SourceDetails Current);

public static class UpdateSourceEndpoint
{
    public const string ReentryText = "Changing the connection host requires re-entering your credentials.";

    public static async Task<Checked<SourceChange>> LoadAsync(
        UpdateSource command, Source source, HttpContext context, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher,
        CancellationToken ct)
    {
        if (IfMatch.Version(context) is { } expected && expected != source.Version) return IfMatch.Stale(source.Version, expected);

        if (command.AccessMethod is not null && command.AccessMethod != source.AccessMethod)
            return Problems.Validation("Access method cannot be changed. Create a new source instead.", "access_method", "immutable_field");
        if (command.SourceType is not null && command.SourceType != source.SourceType)
            return Problems.Validation("Source type cannot be changed. Create a new source instead.", "source_type", "immutable_field");
        if (source.IsDirect && command.Prefix is not null && SourcePrefix.CheckDirectName(command.Prefix) is { } nameProblem)
            return nameProblem;
        if (!source.IsDirect && command.Prefix is not null && NullIfEmpty(command.Prefix) != source.Prefix)
            return Problems.Validation("Prefix cannot be changed on warehouse sources.", "prefix", "immutable_field");

        var current = (await session.LoadAsync<SourceDetails>(source.Id, ct))!;
        if (command.JobInputs is null) return new SourceChange(source.JobInputs, null, null, false, current);

        var type = registry.Get(source.SourceType);
        var schema = type.Definition.Config;
        var masked = schema.MaskedPlaceholders(command.JobInputs);
        if (masked.Count > 0)
        {
            return Problems.Validation($"'{masked[0]}' holds a masked placeholder, not a secret. Send the real value, or leave the field out to keep the stored one.",
                $"job_inputs.{masked[0]}", "masked_secret");
        }

        var dataKeyDocument = await session.LoadAsync<DataKey>(source.Id, ct);
        var dataKey = dataKeyDocument is null ? null : cipher.Unwrap(dataKeyDocument);
        var storedSecrets = source.Secrets is not null && dataKey is not null ? cipher.Unseal(source.Secrets, dataKey, source.Id) : new JsonObject();
        var stored = Combine(source.JobInputs, storedSecrets);
        var merged = schema.Merge(stored, command.JobInputs);

        if (CarriesSecretsToNewTarget(type.Definition, stored, merged, command.JobInputs))
            return Problems.Validation(ReentryText, "job_inputs", "credentials_reentry_required");

        var (config, configProblem) = SourceConfigGate.Validate(type, merged, "job_inputs");
        if (configProblem is not null) return configProblem;
        if (await SourceConfigGate.CheckCredentialsAsync(type, config!, ct) is { } credentials) return credentials;

        var (publicConfig, secrets) = schema.Split(config!);
        if (secrets.Count == 0) return new SourceChange(publicConfig, null, null, true, current);

        DataKey? newDataKey = null;
        if (dataKey is null) (newDataKey, dataKey) = cipher.NewDataKey(source.Id, DateTimeOffset.UtcNow);
        return new SourceChange(publicConfig, cipher.Seal(secrets, dataKey, source.Id), newDataKey, true, current);
    }

    public static ProblemDetails Validate(Checked<SourceChange> change) => change.Problem ?? WolverineContinue.NoProblems;

    /// <summary>The decision: which fields change, as one event. Returns the source as it will read afterwards.</summary>
    [WolverinePatch("/api/projects/{project_id}/external_data_sources/{id}")]
    public static (SourceDetails, Events, IMartenOp) Patch(
        UpdateSource command, [WriteAggregate] Source source, Checked<SourceChange> checkedChange, ClaimsPrincipal user, DateTimeOffset now,
        SourceTypeRegistry registry)
    {
        var change = checkedChange.Value!;
        var prefix = source.IsDirect && command.Prefix is not null ? command.Prefix.Trim() : source.Prefix;
        var description = command.Description is null ? source.Description : NullIfEmpty(command.Description);
        var directQuery = command.DirectQueryEnabled ?? source.DirectQueryEnabled;

        var changed = new List<string>();
        if (prefix != source.Prefix) changed.Add("prefix");
        if (description != source.Description) changed.Add("description");
        if (directQuery != source.DirectQueryEnabled) changed.Add("direct_query_enabled");
        if (change.ConfigChanged) changed.Add("job_inputs");

        var details = change.Current.WithCapabilitiesFrom(registry);
        if (changed.Count == 0) return (details, [], MartenOps.Nothing());

        var updated = new SourceUpdated(source.Id, changed, prefix, description, directQuery, change.PublicConfig, change.NewSecrets, Actor.From(user), now);
        SourceDetailsProjection.Apply(new JasperFx.Events.Event<SourceUpdated>(updated) { Version = source.Version + 1 }, details);
        return (details, [updated], change.NewDataKey is null ? MartenOps.Nothing() : MartenOps.Store(change.NewDataKey));
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

    /// <summary>The full config: the public part with the secrets laid back in at their paths.</summary>
    public static JsonObject Combine(JsonObject publicConfig, JsonObject secrets)
    {
        var combined = (JsonObject)publicConfig.DeepClone();
        foreach (var (key, value) in secrets)
        {
            if (value is JsonObject nested && combined[key] is JsonObject block) combined[key] = Combine(block, nested);
            else combined[key] = value?.DeepClone();
        }

        return combined;
    }

    private static string? NullIfEmpty(string value) => value.Length == 0 ? null : value;
}
