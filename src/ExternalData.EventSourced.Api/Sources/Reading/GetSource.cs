using Microsoft.AspNetCore.Mvc;
using System.Globalization;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using JasperFx.Events;
using Marten;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>GET external_data_sources/{id}/ (API.md §3 row 3). <c>?as_of=</c> a stream version or an ISO
/// timestamp replays the stream up to that point, for auditors.</summary>
public static class GetSourceEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/{id}")]
    [ProducesResponseType<SourceDetails>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(Guid id, string? as_of, IQuerySession session, SourceTypeRegistry registry, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(as_of))
        {
            var details = await session.LoadAsync<SourceDetails>(id, ct);
            return details is null ? Results.Problem(Problems.NotFound()) : SourceResponses.Source(details.WithCapabilitiesFrom(registry), withSchemas: true, session);
        }

        IReadOnlyList<IEvent> events;
        if (long.TryParse(as_of, NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0)
            events = await session.Events.FetchStreamAsync(id, version, token: ct);
        else if (DateTimeOffset.TryParse(as_of, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var timestamp))
            events = await session.Events.FetchStreamAsync(id, timestamp: timestamp.ToUniversalTime(), token: ct);
        else
            return Results.Problem(Problems.Validation("as_of must be a stream version (a positive integer) or an ISO 8601 timestamp.", "as_of", "invalid_as_of"));

        var past = SourceAsOf.Fold(events);
        return past is null ? Results.Problem(Problems.NotFound()) : SourceResponses.Source(past.WithCapabilitiesFrom(registry), withSchemas: true);
    }
}

/// <summary>A source as it was: its events folded in memory with the same pure methods the inline projections use.</summary>
public static class SourceAsOf
{
    public static SourceDetails? Fold(IEnumerable<IEvent> events)
    {
        SourceDetails? details = null;
        var schemas = new Dictionary<Guid, SourceSchema>();
        foreach (var @event in events)
        {
            switch (@event.Data)
            {
                case SourceCreated:
                    details = SourceDetailsProjection.Create(@event.As<SourceCreated>());
                    break;
                case SourceUpdated when details is not null:
                    SourceDetailsProjection.Apply(@event.As<SourceUpdated>(), details);
                    break;
                case SchemaAdded added when details is not null:
                    SourceDetailsProjection.Apply(@event.As<SchemaAdded>(), details);
                    schemas[added.SchemaId] = SourceSchemaProjection.Create(@event.As<SchemaAdded>());
                    break;
                case SchemasBulkUpdated bulk when details is not null:
                    SourceDetailsProjection.Apply(@event.As<SchemasBulkUpdated>(), details);
                    foreach (var change in bulk.Schemas)
                        if (schemas.TryGetValue(change.SchemaId, out var schema)) SourceSchemaProjection.Apply(bulk, schema);
                    break;
                case SchemasRefreshed refreshed when details is not null:
                    SourceDetailsProjection.Apply(@event.As<SchemasRefreshed>(), details);
                    foreach (var schemaId in SourceSchemaProjection.AffectedSchemas(refreshed))
                        if (schemas.TryGetValue(schemaId, out var schema)) SourceSchemaProjection.Apply(refreshed, schema);
                    break;
                case WebhookRegistered when details is not null:
                    SourceDetailsProjection.Apply(@event.As<WebhookRegistered>(), details);
                    break;
                case WebhookRegistrationFailed when details is not null:
                    SourceDetailsProjection.Apply(@event.As<WebhookRegistrationFailed>(), details);
                    break;
                case WebhookDeleted when details is not null:
                    SourceDetailsProjection.Apply(@event.As<WebhookDeleted>(), details);
                    break;
                case CdcEnabled when details is not null:
                    SourceDetailsProjection.Apply(@event.As<CdcEnabled>(), details);
                    break;
                case CdcSettingsChanged when details is not null:
                    SourceDetailsProjection.Apply(@event.As<CdcSettingsChanged>(), details);
                    break;
                case CdcPublicationTablesChanged when details is not null:
                    SourceDetailsProjection.Apply(@event.As<CdcPublicationTablesChanged>(), details);
                    break;
                case CdcDisabled disabled when details is not null:
                    SourceDetailsProjection.Apply(@event.As<CdcDisabled>(), details);
                    foreach (var reset in disabled.SchemasReset)
                        if (schemas.TryGetValue(reset.SchemaId, out var schema)) SourceSchemaProjection.Apply(disabled, schema);
                    break;
                case SourceDeleted:
                    return null;
            }
        }

        return details?.WithSchemas(schemas.Values.Where(s => !s.Removed).OrderBy(s => s.Name, StringComparer.Ordinal).Select(SchemaDetails.From));
    }

    private static IEvent<T> As<T>(this IEvent @event) where T : notnull => (IEvent<T>)@event;
}
