using System.Security.Claims;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Wolverine.Http;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Sources;

/// <summary>DELETE external_data_sources/{id}/ (API.md §3 row 5, ref §5.5): soft delete, 204.</summary>
public static class DeleteSourceEndpoint
{
    /// <summary>The event is appended to the stream (kept for history); deleting the data key in the same
    /// transaction shreds every secret this source ever stored.</summary>
    [WolverineDelete("/api/projects/{project_id}/external_data_sources/{id}")]
    public static (NoContent, Events, IMartenOp) Delete([WriteAggregate] Source source, ClaimsPrincipal user, DateTimeOffset now) =>
        (TypedResults.NoContent(), [new SourceDeleted(source.Id, Actor.From(user), now)], MartenOps.Delete<DataKey>(source.Id));
}
