using Marten;
using Wolverine;

namespace ExternalData.EventSourced.Sources;

/// <summary>Look over every project's schedules for one that went missing: a schema enabled but never armed, or armed
/// for a time long past (its due message lost). Sent at start-up and then by itself every few minutes, in memory: each
/// node runs one loop, and a restart starts a new one rather than piling up old ones.</summary>
public sealed record ReconcileSyncSchedules;

public static class ReconcileSyncSchedulesHandler
{
    public static readonly TimeSpan Every = TimeSpan.FromMinutes(5);

    public static async Task<OutgoingMessages> Handle(ReconcileSyncSchedules _, IDocumentStore store, DateTimeOffset now, CancellationToken ct)
    {
        await using var session = store.QuerySession();
        var enabled = await session.Query<SourceSchema>()
            .Where(s => s.AnyTenant() && !s.Removed && s.Settings.ShouldSync && s.Settings.SyncFrequency != null
                        && s.Settings.SyncType != SyncTypes.Cdc && s.Settings.SyncType != SyncTypes.Webhook)
            .Select(s => new EnabledSchema(s.Id, s.SourceId)).ToListAsync(ct);
        var states = (await session.Query<SchemaSync>().Where(s => s.AnyTenant()).ToListAsync(ct)).ToDictionary(s => s.Id);
        var projects = (await session.Query<Source>().Where(s => s.AnyTenant()).Select(s => new SourceProject(s.Id, s.ProjectId)).ToListAsync(ct))
            .ToDictionary(s => s.Id, s => s.ProjectId);

        var messages = new OutgoingMessages();
        foreach (var bySource in enabled.Where(s => Lost(states.GetValueOrDefault(s.Id), now)).GroupBy(s => s.SourceId))
            if (projects.TryGetValue(bySource.Key, out var project))
                messages.AddRange(SyncScheduler.Arm(project, bySource.Key, bySource.Select(s => s.Id)));
        messages.Add(new ReconcileSyncSchedules().DelayedFor(Every));
        return messages;
    }

    /// <summary>Not running, and either never armed or armed for a time past by more than the grace: the arm handler
    /// decides the rest (a schema with no frequency, or a CDC one, stays unarmed).</summary>
    private static bool Lost(SchemaSync? state, DateTimeOffset now) =>
        state is null ? true
        : state.RunningJobId is not null ? false
        : state.NextRunAt is null || state.NextRunAt < now - SyncSchedule.Grace;

    private sealed record EnabledSchema(Guid Id, Guid SourceId);

    private sealed record SourceProject(Guid Id, string ProjectId);
}

/// <summary>Starts this node's reconcile loop once every hosted service (Wolverine's among them) has started.</summary>
public sealed class SyncScheduleReconciler(IServiceScopeFactory scopes, IConfiguration configuration) : IHostedLifecycleService
{
    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        if (configuration["Sync:Scheduler"] == "Disabled") return;
        using var scope = scopes.CreateScope();
        await scope.ServiceProvider.GetRequiredService<IMessageBus>()
            .ScheduleAsync(new ReconcileSyncSchedules(), TimeSpan.FromSeconds(configuration.GetValue("Sync:ReconcileDelaySeconds", 10)));
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
