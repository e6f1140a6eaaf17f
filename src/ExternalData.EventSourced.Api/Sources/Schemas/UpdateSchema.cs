using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// PATCH external_data_schemas/{id}/ (ref §5.21): one schema's settings, by the very rules of one
/// <c>bulk_update_schemas</c> entry, because it is that use case with a batch of one (the same checks, the same event,
/// the same schedule re-arming). Answers the schema with its source; a refusal says the schema's reason alone.
/// </summary>
public static class UpdateSchema
{
    /// <summary>Every channel's PATCH of one schema: the bulk update of a batch of one, then the schema as it now reads.</summary>
    public static async Task<Checked<JsonObject>> RunAsync(IMessageBus bus, IQuerySession session, Guid id, JsonObject body, Caller caller, int? expectedVersion, CancellationToken ct)
    {
        if (await session.LoadAsync<SourceSchema>(id, ct) is not { Removed: false } schema) return Problems.NotFound();
        var entry = (JsonObject)body.DeepClone();
        entry["id"] = id.ToString();
        var outcome = await bus.RunAsync<IReadOnlyList<SchemaDetails>>(
            new BulkUpdateSchemas([entry]) { SourceId = schema.SourceId, ExpectedVersion = expectedVersion, Caller = caller }, ct);
        if (outcome.Problem is { } problem) return AsOne(problem);
        return await SchemaQueries.FindAsync(session, id, ct) is var (updated, source) ? SchemaQueries.WithSource(updated, source) : Problems.NotFound();
    }

    /// <summary>A batch's refusal of its only entry, said as that entry's own reason.</summary>
    private static ProblemDetails AsOne(ProblemDetails problem)
    {
        if (problem.Extensions.TryGetValue("errors", out var errors) && errors is System.Collections.IEnumerable list
            && list.Cast<object>().ToList() is [var only] && only.GetType().GetProperty("detail")?.GetValue(only) is string detail)
        {
            problem.Detail = SyncTypeRules.AsSentence(detail);
            problem.Extensions.Remove("errors");
        }

        return problem;
    }
}

public static class UpdateSchemaEndpoint
{
    [WolverinePatch("/api/projects/{project_id}/external_data_schemas/{id}")]
    [ProducesResponseType<SchemaDetails>(StatusCodes.Status200OK)]
    public static async Task<IResult> Patch(string project_id, Guid id, JsonObject body, IQuerySession session, HttpContext context, IMessageBus bus)
    {
        var outcome = await UpdateSchema.RunAsync(bus, session, id, body, HttpCaller.From(context, project_id), IfMatch.Version(context), context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value, ApiJson.Options);
    }
}
