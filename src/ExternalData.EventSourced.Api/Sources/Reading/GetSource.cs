using System.Globalization;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>GET external_data_sources/{id}/ (API.md §3 row 3). <c>?as_of=</c> a stream version or an ISO
/// timestamp replays the stream up to that point, for auditors.</summary>
public static class GetSourceEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/{id}")]
    public static async Task<IResult> Get(Guid id, string? as_of, IQuerySession session, SourceTypeRegistry registry, CancellationToken ct)
    {
        SourceDetails? details;
        if (string.IsNullOrEmpty(as_of))
        {
            details = await session.LoadAsync<SourceDetails>(id, ct);
        }
        else if (long.TryParse(as_of, NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0)
        {
            details = await session.Events.AggregateStreamAsync<SourceDetails>(id, version: version, token: ct);
        }
        else if (DateTimeOffset.TryParse(as_of, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var timestamp))
        {
            details = await session.Events.AggregateStreamAsync<SourceDetails>(id, timestamp: timestamp.UtcDateTime, token: ct);
        }
        else
        {
            return Results.Problem(Problems.Validation("as_of must be a stream version (a positive integer) or an ISO 8601 timestamp.", "as_of", "invalid_as_of"));
        }

        return details is null ? Results.Problem(Problems.NotFound()) : Results.Json(details.WithCapabilitiesFrom(registry));
    }
}
