namespace ExternalData.EventSourced.SourceTypes.Configuration;

/// <summary>A field of a source type's form (ref §6.4). The same definitions drive validation, secret
/// handling, sanitising and the rendered connect page, so they can never disagree.</summary>
public abstract record SourceField(string Name, string Label, bool Required);

/// <summary>A plain input. <paramref name="InputType"/> is PostHog's: text, password, number, textarea…</summary>
public sealed record InputField(
    string Name,
    string Label,
    string InputType,
    bool Required,
    string? Placeholder = null,
    string? Caption = null,
    bool Secret = false) : SourceField(Name, Label, Required)
{
    public bool IsSecret => Secret || InputType == "password";
}

/// <summary>A choice whose options may carry their own fields; stored as <c>{"selection": value, ...option fields}</c>.</summary>
public sealed record SelectField(
    string Name,
    string Label,
    bool Required,
    string DefaultValue,
    IReadOnlyList<SelectOption> Options) : SourceField(Name, Label, Required);

public sealed record SelectOption(string Label, string Value, IReadOnlyList<SourceField> Fields);

/// <summary>An optional group; stored as <c>{"enabled": bool, ...fields}</c>.</summary>
public sealed record SwitchGroupField(
    string Name,
    string Label,
    bool Default,
    IReadOnlyList<SourceField> Fields,
    string? Caption = null) : SourceField(Name, Label, false);

/// <summary>PostHog's SSH tunnel block. We accept its shape but refuse <c>enabled: true</c> until tunnels exist.</summary>
public sealed record SshTunnelField(string Name = "ssh_tunnel", string Label = "Use SSH tunnel?") : SourceField(Name, Label, false);
