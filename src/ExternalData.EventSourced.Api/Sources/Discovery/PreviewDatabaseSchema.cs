using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Discovery;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>One discovered table as the preview shows it: exactly ref §5.14's fields.</summary>
public sealed record PreviewTable(
    string Table,
    string? Label,
    bool ShouldSync,
    IReadOnlyList<IncrementalField> IncrementalFields,
    bool IncrementalAvailable,
    bool AppendAvailable,
    bool? CdcAvailable,
    bool? XminAvailable,
    bool SupportsWebhooks,
    bool WebhookOnly,
    long? Rows,
    string? Description,
    IReadOnlyList<PreviewColumn> AvailableColumns,
    IReadOnlyList<string>? DetectedPrimaryKeys,
    string? PermissionError,
    string? RlsWarning,
    string? IncrementalField,
    string? SyncType,
    bool ShouldSyncDefault);

public sealed record PreviewColumn(string Field, string Label, string Type, bool Nullable);

/// <summary>
/// POST external_data_sources/database_schema/ (API.md §3 row 7, ref §5.14): what tables would a source with this
/// config have? A probe: it checks the credentials live and discovers, and stores nothing. The body is flat:
/// <c>source_type</c> beside the config keys.
/// </summary>
public static class PreviewDatabaseSchemaEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/database_schema")]
    [ProducesResponseType<IReadOnlyList<PreviewTable>>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(JsonObject body, SourceTypeRegistry registry, CancellationToken ct)
    {
        if (SchemaRules.Text(body, "source_type") is not { } sourceType)
            return Results.Problem(Problems.Validation("Missing required parameter: source_type", "source_type", "required"));
        if (!registry.TryGet(sourceType, out var type))
            return Results.Problem(Problems.Validation($"Unknown source_type '{sourceType}'", "source_type", "unknown_source_type"));

        var config = (JsonObject)body.DeepClone();
        config.Remove("source_type");
        config.Remove("access_method");
        var (normalised, problem) = SourceConfigGate.Validate(type, config, attrPrefix: null);
        if (problem is not null) return Results.Problem(problem);
        if (await SourceConfigGate.CheckCredentialsAsync(type, normalised!, ct) is { } credentials) return Results.Problem(credentials);

        var discovery = await type.DiscoverAsync(normalised!, ct);
        if (!discovery.Check.Ok) return Results.Problem(Problems.Validation(discovery.Check.Message!, null, discovery.Check.Code!));
        return Results.Json(discovery.Tables.Select(t => ToPreview(t, type.Definition.Capabilities.Cdc)).ToList());
    }

    public static PreviewTable ToPreview(DiscoveredTable t, bool typeSupportsCdc) => new(
        Table: t.Name,
        Label: t.Label,
        ShouldSync: false,
        IncrementalFields: t.IncrementalFields,
        IncrementalAvailable: t.SupportsIncremental,
        AppendAvailable: t.SupportsAppend,
        CdcAvailable: typeSupportsCdc ? t.SupportsCdc : null,
        // xmin merges by primary key like CDC, and is Postgres's as CDC is: available exactly where CDC is.
        XminAvailable: typeSupportsCdc ? t.SupportsCdc : null,
        SupportsWebhooks: t.SupportsWebhooks,
        WebhookOnly: t.WebhookOnly,
        Rows: t.RowEstimate,
        Description: t.Description,
        AvailableColumns: t.Columns.Select(c => new PreviewColumn(c.Name, c.Name, c.DataType, c.IsNullable)).ToList(),
        DetectedPrimaryKeys: t.DetectedPrimaryKeys,
        PermissionError: t.PermissionError,
        RlsWarning: t.RlsWarning,
        IncrementalField: t.IncrementalFields.FirstOrDefault(f => f.Field.Length > 0)?.Field,
        SyncType: null,
        ShouldSyncDefault: t.ShouldSyncDefault);
}
