using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using ExternalData.EventSourced.SourceTypes.Discovery;

namespace ExternalData.EventSourced.SourceTypes;

/// <summary>
/// One kind of external system we can connect to. Adding a source type is one folder with one class
/// implementing this interface: assembly scanning registers it, nothing else changes.
/// </summary>
public interface ISourceType
{
    SourceTypeDefinition Definition { get; }

    /// <summary>Fills form fields from a convenience input (e.g. a connection string) before validation.</summary>
    JsonObject Prepare(JsonObject input) => input;

    /// <summary>Opens a real connection with the given (validated, complete) config and reports whether it works.</summary>
    Task<SourceCheck> CheckCredentialsAsync(JsonObject config, CancellationToken ct);

    /// <summary>Lists the tables or endpoints the credentials can see.</summary>
    Task<DiscoveryResult> DiscoverAsync(JsonObject config, CancellationToken ct);
}

/// <summary>What a source type is: its name, form, capabilities and which fields name its connection target.</summary>
public sealed record SourceTypeDefinition(
    string Name,
    string Label,
    string Category,
    string Caption,
    string DocsUrl,
    IReadOnlyList<SourceField> Fields,
    SourceCapabilities Capabilities,
    IReadOnlyList<string> ConnectionTargetFields,
    string? DirectQueryEngine = null,
    IReadOnlyList<CatalogTable>? DocumentedTables = null,
    IReadOnlyList<string>? SuggestedTables = null)
{
    public ConfigSchema Config { get; } = new(Fields);
}

/// <summary>A table a static-endpoint source (Stripe) always has, listed in the catalogue without credentials.</summary>
public sealed record CatalogTable(
    string Name,
    string Label,
    string Description,
    IReadOnlyList<string> SyncMethods,
    IReadOnlyList<IncrementalField> IncrementalFields,
    IReadOnlyList<string> PrimaryKeys);

public sealed record SourceCapabilities(
    bool Incremental,
    bool Append,
    bool Webhooks,
    bool Cdc,
    bool DirectQuery,
    bool ColumnSelection);

/// <summary>The outcome of talking to a source: fine, or a problem the caller can act on.</summary>
public sealed record SourceCheck(bool Ok, string? Code = null, string? Message = null)
{
    public static readonly SourceCheck Success = new(true);
    public static SourceCheck Failed(string code, string message) => new(false, code, message);
}
