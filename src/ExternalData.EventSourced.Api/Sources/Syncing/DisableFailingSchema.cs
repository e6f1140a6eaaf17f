using System.Text.Json.Nodes;
using ExternalData.EventSourced.Shared;
using Marten;
using Wolverine;

namespace ExternalData.EventSourced.Sources;

/// <summary>A run failed in a way only a person can fix (credentials refused, a table or cursor column gone, a grant
/// revoked, duplicate keys, an incompatible type change): stop the schema's schedule until someone acts (SYNC.md §5).</summary>
public sealed record DisableFailingSchema(string ProjectId, Guid SourceId, Guid SchemaId, Guid JobId, string ErrorClass)
{
    /// <summary>The service's run loop, disabling the schema its run could not sync.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Caller Caller => Caller.System(ProjectId, "sync-runner", $"job-{JobId:N}", $"sync job {JobId} failed: {ErrorClass}");
}

public static class DisableFailingSchemaHandler
{
    /// <summary>Runs the same use case a user's PATCH runs (<c>should_sync: false</c>), so the change is an ordinary settings
    /// change of the source, recorded with the system as actor and shown in its history; the schema's status stays
    /// <c>Failed</c> with the run's <c>latest_error</c>. Skipped when the schema moved on meanwhile (a user changed it and
    /// a newer run holds it, or it is already disabled): that decision is theirs now.</summary>
    public static async Task Handle(DisableFailingSchema command, IQuerySession session, IMessageBus bus, ILogger<DisableFailingSchema> logger, CancellationToken ct)
    {
        var state = await session.LoadAsync<SchemaSync>(command.SchemaId, ct);
        var schema = await session.LoadAsync<SourceSchema>(command.SchemaId, ct);
        if (state?.LastJobId != command.JobId || state.LastStatus != JobStatuses.Failed || schema is not { Removed: false, Settings.ShouldSync: true }) return;

        var disable = new BulkUpdateSchemas([new JsonObject { ["id"] = command.SchemaId.ToString(), ["should_sync"] = false }])
        {
            SourceId = command.SourceId,
            Caller = command.Caller,
        };
        var outcome = await bus.RunAsync<IReadOnlyList<SchemaDetails>>(disable, ct);
        if (outcome.Problem is { } problem)
            logger.LogWarning("Could not disable schema {Schema} after its run failed ({Class}): {Problem}", command.SchemaId, command.ErrorClass, problem.Detail);
        else
            logger.LogInformation("Disabled schema {Schema} after a failure only a person can fix ({Class}, job {Job})", command.SchemaId, command.ErrorClass, command.JobId);
    }
}
