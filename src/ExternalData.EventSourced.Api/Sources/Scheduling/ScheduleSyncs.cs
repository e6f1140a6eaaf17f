using System.Text.Json.Serialization;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using JasperFx.Events;
using Marten;
using Wolverine;

namespace ExternalData.EventSourced.Sources;

/// <summary>A schema's scheduled run is due: a durable scheduled message, so it fires after a restart too, once.</summary>
public sealed record SyncDue(string ProjectId, Guid SourceId, Guid SchemaId, DateTimeOffset DueAt) : ICommand
{
    [JsonIgnore] public Caller Caller => ArmSyncSchedules.SchedulerCaller(ProjectId, SourceId);
}

public static class SyncScheduler
{
    /// <summary>Whether the engine can read the source's tables (see <see cref="SyncRuns.CanRead"/>).</summary>
    public static bool Readable(SourceTypeRegistry registry, Source source) => SyncRuns.CanRead(registry.Get(source.SourceType));

    /// <summary>The message that asks a source's schemas to be looked at again, or nothing when none changed.</summary>
    public static OutgoingMessages Arm(string projectId, Guid sourceId, IEnumerable<Guid> schemaIds)
    {
        var ids = schemaIds.Distinct().ToList();
        return ids.Count == 0 ? [] : [new ArmSyncSchedules(projectId, sourceId, ids).ForProject()];
    }

    /// <summary>Carries out a decision on a schema's sync stream: a run started (its job and the message that runs it) or
    /// the next due time armed (its durable scheduled message) or disarmed. Appends only; the caller's transaction commits.
    /// A started run goes to the queue every node takes from (ADR 0050), or, <paramref name="startHere"/>, to this node's own.</summary>
    public static void Apply(
        ScheduleDecision decision, Source source, SourceSchema schema, IEventStream<SchemaSync> stream, IDocumentSession session, Caller caller,
        OutgoingMessages messages, DateTimeOffset now, bool readable, string? reason = null, bool startHere = false)
    {
        switch (decision)
        {
            case RunNow run when SyncRuns.Start(source, schema, stream.Aggregate, run.Trigger, caller, Guid.CreateVersion7(now), now, readable) is { } start:
                stream.AppendOne(start.RunStarted);
                session.Events.StartStream<SyncJob>(start.JobStarted.JobId, start.JobStarted);
                messages.Add(startHere ? start.Run : start.Run.ToDestination(SyncRunQueue.Uri));
                break;
            case ArmAt arm:
                stream.AppendOne(new SyncScheduled(schema.Id, source.Id, arm.DueAt, schema.Settings.SyncFrequency ?? "", now, caller.Actor, caller.Channel, reason));
                messages.Add(new SyncDue(caller.ProjectId, source.Id, schema.Id, arm.DueAt)
                    .WithDeliveryOptions(new DeliveryOptions { TenantId = caller.ProjectId }).ScheduledAt(arm.DueAt));
                break;
            case Disarm:
                stream.AppendOne(new SyncScheduled(schema.Id, source.Id, null, schema.Settings.SyncFrequency ?? "", now, caller.Actor, caller.Channel, reason));
                break;
        }
    }
}

public static class ArmSyncSchedulesHandler
{
    public static async Task<OutgoingMessages> Handle(ArmSyncSchedules command, IDocumentSession session, SourceTypeRegistry registry, DateTimeOffset now, CancellationToken ct)
    {
        var messages = new OutgoingMessages();
        if (await session.LoadAsync<Source>(command.SourceId, ct) is not { } source) return messages;
        var schemas = await session.LoadManyAsync<SourceSchema>(ct, command.SchemaIds);
        var decided = new List<(SourceSchema Schema, IEventStream<SchemaSync> Stream, ScheduleDecision Decision)>();
        foreach (var schema in schemas)
        {
            var stream = await session.Events.FetchForWriting<SchemaSync>(schema.Id, ct);
            decided.Add((schema, stream, SyncSchedule.Decide(source, schema, stream.Aggregate, now, rearm: command.Reason is not null)));
        }

        // A table or two just created or enabled start at once on this node, as a run someone asked for does; a burst (a
        // setup of many tables) goes to the shared queue, for the nodes to share (ADR 0050).
        var startHere = decided.Count(d => d.Decision is RunNow) <= SyncRunQueue.StartedWhereAsked;
        foreach (var (schema, stream, decision) in decided)
            SyncScheduler.Apply(decision, source, schema, stream, session, command.Caller, messages, now, SyncScheduler.Readable(registry, source), command.Reason, startHere);

        return messages;
    }
}

public static class SyncDueHandler
{
    public static async Task<OutgoingMessages> Handle(SyncDue due, IDocumentSession session, SourceTypeRegistry registry, DateTimeOffset now, CancellationToken ct)
    {
        var messages = new OutgoingMessages();
        var stream = await session.Events.FetchForWriting<SchemaSync>(due.SchemaId, ct);
        var source = await session.LoadAsync<Source>(due.SourceId, ct);
        var schema = await session.LoadAsync<SourceSchema>(due.SchemaId, ct);
        var decision = SyncSchedule.WhenDue(source, schema, stream.Aggregate, due.DueAt);
        if (source is not null && schema is not null) SyncScheduler.Apply(decision, source, schema, stream, session, due.Caller, messages, now, SyncScheduler.Readable(registry, source));
        else if (decision is Disarm) stream.AppendOne(new SyncScheduled(due.SchemaId, due.SourceId, null, "", now, due.Caller.Actor, due.Caller.Channel));
        return messages;
    }
}
