using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Discovery;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>A schema's cursor candidates and capabilities, live from the source (ref §5.22).</summary>
public sealed record IncrementalFieldsProbe(
    IReadOnlyList<IncrementalField> IncrementalFields, bool IncrementalAvailable, bool AppendAvailable, bool? CdcAvailable, bool? XminAvailable,
    bool FullRefreshAvailable, bool SupportsWebhooks, bool WebhookOnly, IReadOnlyList<PreviewColumn> AvailableColumns, IReadOnlyList<string>? DetectedPrimaryKeys);

/// <summary>Asks the source now, with the stored credentials, what a schema's table offers to sync on (ref §5.22); reads
/// only, records nothing. REST and MCP run it.</summary>
public static class IncrementalFieldsProbing
{
    public static async Task<Checked<IncrementalFieldsProbe>> ProbeAsync(IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, Guid id, CancellationToken ct)
    {
        if (await session.LoadAsync<SourceSchema>(id, ct) is not { Removed: false } schema) return Problems.NotFound();
        if (await session.LoadAsync<Source>(schema.SourceId, ct) is not { } source) return Problems.NotFound();
        if (registry.Get(source.SourceType) is not { } type) return Problems.Validation("Missing source type", null, "missing_source_type");

        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        var discovery = await type.DiscoverAsync(config, ct);
        if (!discovery.Check.Ok) return Problems.Validation(discovery.Check.Message!, null, discovery.Check.Code!);
        if (discovery.Tables.FirstOrDefault(t => t.Name == schema.Name) is not { } table)
            return Problems.Validation($"Schema with name {schema.Name} not found", null, "schema_not_found");

        var preview = PreviewDatabaseSchemaEndpoint.ToPreview(table, type.Definition.Capabilities.Cdc);
        return new IncrementalFieldsProbe(
            preview.IncrementalFields, preview.IncrementalAvailable, preview.AppendAvailable, preview.CdcAvailable, preview.XminAvailable,
            FullRefreshAvailable: !table.WebhookOnly, preview.SupportsWebhooks, preview.WebhookOnly, preview.AvailableColumns, preview.DetectedPrimaryKeys);
    }
}

/// <summary>POST external_data_schemas/{id}/incremental_fields/ (ref §5.22).</summary>
public static class ProbeIncrementalFieldsEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_schemas/{id}/incremental_fields")]
    [ProducesResponseType<IncrementalFieldsProbe>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(Guid id, IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        var probe = await IncrementalFieldsProbing.ProbeAsync(session, registry, cipher, id, ct);
        return probe.Problem is { } problem ? Results.Problem(problem) : Results.Json(probe.Value, ApiJson.Options);
    }
}
