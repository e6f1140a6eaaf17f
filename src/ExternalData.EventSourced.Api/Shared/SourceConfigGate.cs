using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>
/// The config and live-credential gate every path that accepts a source config goes through (ref §5.2 step 8,
/// §6.2, §11): secret references refused, strings trimmed, the form's rules, SSH refused, then a real connection.
/// </summary>
public static class SourceConfigGate
{
    /// <summary>Validates and normalises a flat config payload. Pure: no network.</summary>
    public static (JsonObject? Config, ProblemDetails? Problem) Validate(ISourceType type, JsonObject payload, string? attrPrefix = "payload")
    {
        var secretRefs = payload.Where(kv => kv.Value is JsonObject o && o.ContainsKey("secretRef")).Select(kv => kv.Key).Order().ToList();
        if (secretRefs.Count > 0)
        {
            return (null, Problems.Validation(
                $"Unresolved secret reference(s) for: {string.Join(", ", secretRefs)}. Resolve them to real values before sending, " +
                "or use the connect link so a person can enter the secrets in their browser.", Attr(attrPrefix, secretRefs[0]), "unresolved_secret_reference"));
        }

        var (config, errors) = type.Definition.Config.Normalise(type.Prepare(payload));
        if (errors.Count > 0)
        {
            return (null, Problems.Validation($"Invalid source config: {string.Join(", ", errors.Select(e => e.Message))}",
                Attr(attrPrefix, errors[0].Field), "invalid_source_config"));
        }

        if (config["ssh_tunnel"] is JsonObject tunnel && tunnel["enabled"]?.GetValue<bool>() == true)
        {
            return (null, Problems.Validation(
                "SSH tunnels are not supported yet. Connect to a host reachable from the public internet, or disable the SSH tunnel.",
                Attr(attrPrefix, "ssh_tunnel"), "ssh_tunnel_not_supported"));
        }

        return (config, null);
    }

    private static string Attr(string? prefix, string field) => prefix is null ? field : $"{prefix}.{field}";

    /// <summary>Opens a real connection with the config. Returns the problem in the source's own words, or null.</summary>
    public static async Task<ProblemDetails?> CheckCredentialsAsync(ISourceType type, JsonObject config, CancellationToken ct)
    {
        var check = await type.CheckCredentialsAsync(config, ct);
        return check.Ok ? null : Problems.Validation(check.Message ?? "Invalid credentials", null, check.Code ?? "invalid_credentials");
    }
}
