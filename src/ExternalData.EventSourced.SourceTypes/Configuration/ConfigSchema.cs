using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.SourceTypes.Configuration;

/// <summary>
/// The rules a source type's form implies for a config object: validation (ref §6.2), splitting secrets
/// from the rest, sanitising for reads (ref §6.3) and the PATCH merge (ref §5.4 step 3). Pure functions
/// over <see cref="JsonObject"/>; nothing here touches the network.
/// </summary>
public sealed class ConfigSchema(IReadOnlyList<SourceField> fields)
{
    private static readonly string[] SshSecretKeys = ["password", "passphrase", "private_key"];

    public IReadOnlyList<SourceField> Fields { get; } = fields;

    /// <summary>Trims every string value, keeps only known keys and converts typed inputs (e.g. port → int).
    /// Returns the normalised config and the errors in PostHog's words.</summary>
    public (JsonObject Config, IReadOnlyList<ConfigError> Errors) Normalise(JsonObject input)
    {
        var errors = new List<ConfigError>();
        var output = NormaliseFields(Fields, input, path: "", errors);
        return (output, errors);
    }

    private static JsonObject NormaliseFields(IReadOnlyList<SourceField> fields, JsonObject input, string path, List<ConfigError> errors)
    {
        var output = new JsonObject();
        foreach (var field in fields)
        {
            input.TryGetPropertyValue(field.Name, out var raw);
            var fieldPath = path + field.Name;
            switch (field)
            {
                case InputField f:
                    NormaliseInput(f, raw, fieldPath, output, errors);
                    break;
                case SelectField f:
                    NormaliseSelect(f, raw, fieldPath, output, errors);
                    break;
                case SwitchGroupField f:
                    NormaliseSwitchGroup(f, raw, fieldPath, output, errors);
                    break;
                case SshTunnelField f:
                    NormaliseSshTunnel(f, raw, fieldPath, output, errors);
                    break;
            }
        }

        return output;
    }

    private static void NormaliseInput(InputField field, JsonNode? raw, string path, JsonObject output, List<ConfigError> errors)
    {
        var text = AsText(raw);
        if (string.IsNullOrEmpty(text))
        {
            if (field.Required) errors.Add(new ConfigError(path, $"Required field '{field.Name}' is missing"));
            return;
        }

        if (field.InputType == "number")
        {
            if (!long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number))
            {
                errors.Add(new ConfigError(path, $"Field '{field.Name}' has an invalid value"));
                return;
            }

            output[field.Name] = number;
            return;
        }

        output[field.Name] = text;
    }

    private static void NormaliseSelect(SelectField field, JsonNode? raw, string path, JsonObject output, List<ConfigError> errors)
    {
        JsonObject block;
        switch (raw)
        {
            case null:
                block = new JsonObject { ["selection"] = field.DefaultValue };
                break;
            case JsonObject o:
                block = o;
                break;
            case JsonValue v when v.TryGetValue<string>(out var selected):
                block = new JsonObject { ["selection"] = selected };
                break;
            default:
                errors.Add(new ConfigError(path, $"Field '{field.Name}' has an invalid value"));
                return;
        }

        var selection = AsText(block["selection"]) ?? field.DefaultValue;
        var option = field.Options.FirstOrDefault(o => o.Value == selection);
        if (option is null)
        {
            errors.Add(new ConfigError(path, $"Field '{field.Name}' has an invalid value"));
            return;
        }

        var nested = NormaliseFields(option.Fields, block, path + ".", errors);
        nested.Insert(0, "selection", selection);
        output[field.Name] = nested;
    }

    private static void NormaliseSwitchGroup(SwitchGroupField field, JsonNode? raw, string path, JsonObject output, List<ConfigError> errors)
    {
        var block = raw as JsonObject ?? new JsonObject();
        var enabled = AsBool(block["enabled"]) ?? field.Default;
        var nested = enabled ? NormaliseFields(field.Fields, block, path + ".", errors) : new JsonObject();
        nested.Insert(0, "enabled", enabled);
        output[field.Name] = nested;
    }

    private static void NormaliseSshTunnel(SshTunnelField field, JsonNode? raw, string path, JsonObject output, List<ConfigError> errors)
    {
        if (raw is null) return;
        if (raw is not JsonObject block)
        {
            errors.Add(new ConfigError(path, $"Field '{field.Name}' has an invalid value"));
            return;
        }

        // Only the switch is kept: tunnels are refused when enabled, so no tunnel credentials are ever stored.
        output[field.Name] = new JsonObject { ["enabled"] = AsBool(block["enabled"]) ?? false };
    }

    /// <summary>Splits a normalised config into the part that may be shown and stored in clear, and the secrets.</summary>
    public (JsonObject Public, JsonObject Secrets) Split(JsonObject config)
    {
        var (pub, sec) = SplitFields(Fields, config);
        return (pub, sec);
    }

    private static (JsonObject Public, JsonObject Secrets) SplitFields(IReadOnlyList<SourceField> fields, JsonObject config)
    {
        var pub = new JsonObject();
        var sec = new JsonObject();
        foreach (var field in fields)
        {
            if (!config.TryGetPropertyValue(field.Name, out var value) || value is null) continue;
            switch (field)
            {
                case InputField { IsSecret: true }:
                    sec[field.Name] = value.DeepClone();
                    break;
                case InputField:
                case SshTunnelField:
                    pub[field.Name] = value.DeepClone();
                    break;
                case SelectField select when value is JsonObject block:
                {
                    var option = select.Options.FirstOrDefault(o => o.Value == AsText(block["selection"]));
                    var (p, s) = SplitFields(option?.Fields ?? [], block);
                    p.Insert(0, "selection", AsText(block["selection"]));
                    pub[field.Name] = p;
                    if (s.Count > 0) sec[field.Name] = s;
                    break;
                }
                case SwitchGroupField group when value is JsonObject block:
                {
                    var (p, s) = SplitFields(group.Fields, block);
                    p.Insert(0, "enabled", AsBool(block["enabled"]) ?? false);
                    pub[field.Name] = p;
                    if (s.Count > 0) sec[field.Name] = s;
                    break;
                }
            }
        }

        return (pub, sec);
    }

    /// <summary>The names of every secret field, dotted for nested ones (e.g. "auth_method.stripe_secret_key").</summary>
    public IReadOnlyList<string> SecretPaths() => SecretPathsOf(Fields, "").ToList();

    private static IEnumerable<string> SecretPathsOf(IReadOnlyList<SourceField> fields, string prefix)
    {
        foreach (var field in fields)
        {
            switch (field)
            {
                case InputField { IsSecret: true }:
                    yield return prefix + field.Name;
                    break;
                case SelectField s:
                    foreach (var p in s.Options.SelectMany(o => SecretPathsOf(o.Fields, prefix + field.Name + ".")).Distinct())
                        yield return p;
                    break;
                case SwitchGroupField g:
                    foreach (var p in SecretPathsOf(g.Fields, prefix + field.Name + "."))
                        yield return p;
                    break;
            }
        }
    }

    /// <summary>
    /// Merges a PATCH's <c>job_inputs</c> into the stored config (ref §5.4 step 3): top-level keys replace,
    /// secrets left out or empty keep their stored value, a select with the same selection deep-merges and a
    /// different selection replaces the block (dropping its old secrets).
    /// </summary>
    public JsonObject Merge(JsonObject stored, JsonObject incoming)
    {
        var merged = (JsonObject)stored.DeepClone();
        foreach (var (key, value) in incoming)
        {
            var field = Fields.FirstOrDefault(f => f.Name == key);
            switch (field)
            {
                case InputField { IsSecret: true } when IsEmpty(value):
                    break; // keep the stored secret: reads never return it, so clients round-trip without it
                case SelectField select when value is JsonObject incomingBlock && stored[key] is JsonObject storedBlock:
                    merged[key] = MergeSelect(select, storedBlock, incomingBlock);
                    break;
                case SwitchGroupField group when value is JsonObject incomingGroup && stored[key] is JsonObject storedGroup:
                    merged[key] = new ConfigSchema(group.Fields).Merge(storedGroup, incomingGroup);
                    break;
                default:
                    merged[key] = value?.DeepClone();
                    break;
            }
        }

        return merged;
    }

    private static JsonObject MergeSelect(SelectField select, JsonObject stored, JsonObject incoming)
    {
        var storedSelection = AsText(stored["selection"]);
        var incomingSelection = AsText(incoming["selection"]) ?? storedSelection;
        if (incomingSelection != storedSelection) return (JsonObject)incoming.DeepClone();

        var option = select.Options.FirstOrDefault(o => o.Value == storedSelection);
        var merged = new ConfigSchema(option?.Fields ?? []).Merge(stored, incoming);
        merged["selection"] = storedSelection;
        return merged;
    }

    /// <summary>Secret fields in <paramref name="incoming"/> that hold a masked placeholder such as "********".</summary>
    public IReadOnlyList<string> MaskedPlaceholders(JsonObject incoming) =>
        SecretPaths().Where(path => Lookup(incoming, path) is { } v && LooksMasked(v)).ToList();

    /// <summary>Whether <paramref name="incoming"/> supplies a non-empty value for the secret at <paramref name="path"/>.</summary>
    public static bool Supplies(JsonObject incoming, string path) => !string.IsNullOrEmpty(Lookup(incoming, path));

    public static string? Lookup(JsonObject config, string dottedPath)
    {
        JsonNode? node = config;
        foreach (var part in dottedPath.Split('.'))
        {
            if (node is not JsonObject o || !o.TryGetPropertyValue(part, out node)) return null;
        }

        return AsText(node);
    }

    // What a UI shows in place of a stored secret; storing it would silently overwrite the real one.
    private static bool LooksMasked(string value) => value.Length >= 3 && value.All(c => c is '*' or '•');

    private static bool IsEmpty(JsonNode? node) => string.IsNullOrEmpty(AsText(node));

    internal static string? AsText(JsonNode? node) => node switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>().Trim(),
        JsonValue v when v.GetValueKind() is JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => v.ToJsonString().ToLowerInvariant(),
        _ => null,
    };

    private static bool? AsBool(JsonNode? node) => node switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.True => true,
        JsonValue v when v.GetValueKind() == JsonValueKind.False => false,
        JsonValue v when v.GetValueKind() == JsonValueKind.String =>
            v.GetValue<string>().Trim().ToLowerInvariant() switch { "true" or "1" or "yes" => true, "false" or "0" or "no" or "" => false, _ => null },
        _ => null,
    };
}

/// <summary>A config problem: the dotted field path and PostHog's text for it.</summary>
public sealed record ConfigError(string Field, string Message);
