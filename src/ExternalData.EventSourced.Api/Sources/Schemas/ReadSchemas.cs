using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>The source a schema belongs to, as the schemas viewset's retrieve shows it (ref §5.22).</summary>
public sealed record SchemaSource(Guid Id, string SourceType, string? Prefix, string Status, DateTimeOffset? LastRunAt);

/// <summary>The schema reads every channel runs (REST and MCP): a page of the project's schemas, and one schema with its
/// source, each with its sync state (ref §4.2) and, [beyond], when it next runs.</summary>
public static class SchemaQueries
{
    /// <summary>The project's schemas by name, <paramref name="search"/> matching the name case-insensitively; removed ones
    /// (gone upstream, never enabled) are not listed.</summary>
    public static async Task<Page<SchemaDetails>> PageAsync(IQuerySession session, int take, int skip, string? search, CancellationToken ct)
    {
        IQueryable<SourceSchema> query = session.Query<SourceSchema>().Where(s => !s.Removed);
        if (!string.IsNullOrWhiteSpace(search))
        {
            var term = search.Trim();
            query = query.Where(s => s.Name.Contains(term, StringComparison.OrdinalIgnoreCase));
        }

        var count = await query.CountAsync(ct);
        var schemas = await query.OrderBy(s => s.Name).ThenBy(s => s.Id).Skip(skip).Take(take).ToListAsync(ct);
        var states = (await session.LoadManyAsync<SchemaSync>(ct, schemas.Select(s => s.Id).ToArray())).ToDictionary(s => s.Id);
        return new Page<SchemaDetails>(count, null, null, schemas.Select(s => SchemaDetails.From(s).WithSync(states.GetValueOrDefault(s.Id))).ToList());
    }

    /// <summary>One schema of the project and its source; null when the project has no such schema.</summary>
    public static async Task<(SchemaDetails Schema, SchemaSource Source)?> FindAsync(IQuerySession session, Guid id, CancellationToken ct)
    {
        if (await session.LoadAsync<SourceSchema>(id, ct) is not { Removed: false } schema) return null;
        if (await session.LoadAsync<Source>(schema.SourceId, ct) is not { } source) return null;
        var view = (await SyncViews.ForSourcesAsync(session, [source.Id], ct))[source.Id];
        return (SchemaDetails.From(schema).WithSync(view.States.GetValueOrDefault(schema.Id)),
            new SchemaSource(source.Id, source.SourceType, source.Prefix, view.Status, view.LastRunAt));
    }

    /// <summary>A schema with its <c>source</c>, as one JSON object (the schema's own fields, then <c>source</c>).</summary>
    public static JsonObject WithSource(SchemaDetails schema, SchemaSource source)
    {
        var json = JsonSerializer.SerializeToNode(schema, ApiJson.Options)!.AsObject();
        json["source"] = JsonSerializer.SerializeToNode(source, ApiJson.Options);
        return json;
    }
}

/// <summary>GET external_data_schemas/ (ref §5.22): the project's schemas, paginated, <c>search</c> on the name.</summary>
public static class ListSchemasEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_schemas")]
    [ProducesResponseType<Page<SchemaDetails>>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(string? limit, string? offset, string? search, IQuerySession session, HttpContext context, CancellationToken ct)
    {
        if (Paging.Parse(limit, offset) is not ({ } take, { } skip)) return Results.Problem(Paging.Problem(limit));
        var page = await SchemaQueries.PageAsync(session, take, skip, search, ct);
        var (next, previous) = PageLinks.For(page.Count, take, skip, context);
        return Results.Json(page with { Next = next, Previous = previous }, ApiJson.Options);
    }
}

/// <summary>GET external_data_schemas/{id}/ (ref §5.22): one schema with a summary of its source.</summary>
public static class GetSchemaEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_schemas/{id}")]
    [ProducesResponseType<SchemaDetails>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(Guid id, IQuerySession session, CancellationToken ct) =>
        await SchemaQueries.FindAsync(session, id, ct) is var (schema, source)
            ? Results.Json(SchemaQueries.WithSource(schema, source), ApiJson.Options)
            : Results.Problem(Problems.NotFound());
}
