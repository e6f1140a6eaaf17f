using Microsoft.AspNetCore.Mvc;
using System.Globalization;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using JasperFx.Events;
using Marten;
using Wolverine.Http;
using ExternalData.EventSourced.Shared;

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
            var view = await SourceView.ReadAsync(session, id, withSource: true, withSchemas: true, ct);
            return view.Source is { } source
                ? SourceResponses.Source(SourceDetails.Of(source, registry), withSchemas: true, session, read: view)
                : Results.Problem(Problems.NotFound());
        }

        IReadOnlyList<IEvent> events;
        if (long.TryParse(as_of, NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0)
            events = await session.Events.FetchStreamAsync(id, version, token: ct);
        else if (DateTimeOffset.TryParse(as_of, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var timestamp))
            events = await session.Events.FetchStreamAsync(id, timestamp: timestamp.ToUniversalTime(), token: ct);
        else
            return Results.Problem(Problems.Validation("as_of must be a stream version (a positive integer) or an ISO 8601 timestamp.", "as_of", "invalid_as_of"));

        return SourceAsOf.Fold(events, registry) is { } past ? SourceResponses.Source(past, withSchemas: true) : Results.Problem(Problems.NotFound());
    }
}

/// <summary>A source as it was: its events folded in memory with the same pure methods its documents are folded with.</summary>
public static class SourceAsOf
{
    public static SourceDetails? Fold(IEnumerable<IEvent> events, SourceTypeRegistry registry) =>
        Fold(events, type => registry.TryGet(type, out var known) ? known : null);

    public static SourceDetails? Fold(IEnumerable<IEvent> events, ISourceType type) => Fold(events, _ => type);

    private static SourceDetails? Fold(IEnumerable<IEvent> events, Func<string, ISourceType?> typeOf)
    {
        Source? source = null;
        var schemas = new Dictionary<Guid, SourceSchema>();
        foreach (var @event in events)
        {
            source = Source.After(source, @event);
            if (source is null) return null;
            foreach (var schemaId in SourceSchemaProjection.SchemasNamedBy(@event.Data))
            {
                if (SourceSchemaProjection.Fold.Apply(schemas.GetValueOrDefault(schemaId), @event) is { } schema) schemas[schemaId] = schema;
                else schemas.Remove(schemaId);
            }
        }

        return source is null ? null : SourceDetails.Of(source, typeOf(source.SourceType))
            .WithSchemas(schemas.Values.Where(s => !s.Removed).OrderBy(s => s.Name, StringComparer.Ordinal).Select(SchemaDetails.From));
    }
}
