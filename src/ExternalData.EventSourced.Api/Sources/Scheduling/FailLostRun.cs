using ExternalData.EventSourced.Infrastructure.Messaging;
using ExternalData.EventSourced.Shared;
using Marten;
using Wolverine;

namespace ExternalData.EventSourced.Sources;

/// <summary>A run still holds its schema although nothing will ever run it: its <see cref="RunSyncJob"/> is in no node's
/// inbox (dead-lettered after every retry, or deleted by hand). Found by the schedule reconciler; without this the job
/// stays <c>Running</c> and the schema is held for good.</summary>
public sealed record FailLostRun(string ProjectId, Guid SourceId, Guid SchemaId, Guid JobId)
{
    public const string Error = "The run was lost on the service's side (no node had it queued any more), so it was ended; the next run starts anew.";

    [System.Text.Json.Serialization.JsonIgnore]
    public Caller Caller => Caller.System(ProjectId, "schedule-reconciler", $"job-{JobId:N}", $"run {JobId} lost");

    public DeliveryMessage<FailLostRun> ForProject() => this.WithDeliveryOptions(new DeliveryOptions { TenantId = ProjectId });
}

public static class FailLostRunHandler
{
    /// <summary>Ends the job as failed on the service's side (retryable, <c>internal</c>: the schema stays enabled) and arms
    /// the schema's schedule again. Skipped when the schema moved on meanwhile (the run ended, or another holds it).</summary>
    public static async Task<OutgoingMessages> Handle(FailLostRun command, IDocumentSession session, ILogger<FailLostRun> logger, DateTimeOffset now, CancellationToken ct)
    {
        var sync = await session.Events.FetchForWriting<SchemaSync>(command.SchemaId, ct);
        if (sync.Aggregate?.RunningJobId != command.JobId) return [];
        var caller = command.Caller;
        CallerMetadata.Stamp(session, caller);
        session.Events.Append(command.JobId, new SyncJobFailed(command.JobId, FailLostRun.Error, "internal", now, caller.Actor, caller.Channel));
        sync.AppendOne(new SyncRunFailed(command.SchemaId, command.JobId, FailLostRun.Error, "internal", true, now, caller.Actor, caller.Channel));
        logger.LogWarning("Run {Job} of schema {Schema} was lost (no queued message on any node); ended it as failed", command.JobId, command.SchemaId);
        return [new ArmSyncSchedules(command.ProjectId, command.SourceId, [command.SchemaId]).ForProject()];
    }
}
