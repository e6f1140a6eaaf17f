using System.Text.Json;
using Marten;
using Npgsql;
using Wolverine;
using Wolverine.Util;

namespace ExternalData.EventSourced.Sources;

/// <summary>Look over every project's schedules for one that went missing: a schema enabled but never armed, armed for a
/// time long past, or armed with no due message left in the store to fire it (PostHog #82900: a schedule that stops without
/// a word). Each node sends itself one every <see cref="SyncSchedulerSettings.ReconcileEvery"/>, in memory; one node at a
/// time does the work (a database lock), and no more often than that across the cluster.</summary>
public sealed record ReconcileSyncSchedules;

/// <summary><c>Sync:ReconcileEvery</c> (how often the schedules are checked, 5 min) and <c>Sync:OverdueGrace</c> (how late a
/// due run may be before it counts as lost, 2 min).</summary>
public sealed class SyncSchedulerSettings
{
    public TimeSpan ReconcileEvery { get; set; } = TimeSpan.FromMinutes(5);
    public TimeSpan OverdueGrace { get; set; } = TimeSpan.FromMinutes(2);
}

/// <summary>When the schedules were last reconciled, by which node: one document for the whole service.</summary>
public sealed class ScheduleReconciliation
{
    public const string SingletonId = "sync-schedules";
    public string Id { get; set; } = SingletonId;
    public DateTimeOffset LastRunAt { get; set; }
    public string Node { get; set; } = "";
    public int Rearmed { get; set; }
}

public static class ReconcileSyncSchedulesHandler
{
    // Any fixed number: the advisory lock that lets one node at a time reconcile.
    private const long LockKey = 0x5ced_0001;

    public static async Task<OutgoingMessages> Handle(
        ReconcileSyncSchedules _, IDocumentStore store, SyncSchedulerSettings settings, SourceTypes.SourceTypeRegistry registry, ILogger<ReconcileSyncSchedules> logger,
        DateTimeOffset now, CancellationToken ct)
    {
        var messages = new OutgoingMessages { new ReconcileSyncSchedules().DelayedFor(settings.ReconcileEvery) };
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(ct);
        await using (var take = new NpgsqlCommand($"SELECT pg_try_advisory_xact_lock({LockKey})", connection, transaction))
            if (!(bool)(await take.ExecuteScalarAsync(ct))!) return messages;
        await using var session = store.LightweightSession(Marten.Services.SessionOptions.ForTransaction(transaction));
        var last = await session.LoadAsync<ScheduleReconciliation>(ScheduleReconciliation.SingletonId, ct);
        // Another node did it a moment ago: the cluster reconciles once per interval, not once per node.
        if (last is not null && now - last.LastRunAt < settings.ReconcileEvery / 2) return messages;

        var enabled = await session.Query<SourceSchema>()
            .Where(s => s.AnyTenant() && !s.Removed && s.Settings.ShouldSync && s.Settings.SyncFrequency != null
                        && s.Settings.SyncType != SyncTypes.Cdc)
            .Select(s => new EnabledSchema(s.Id, s.SourceId)).ToListAsync(ct);
        var states = (await session.Query<SchemaSync>().Where(s => s.AnyTenant()).ToListAsync(ct)).ToDictionary(s => s.Id);
        // Only sources whose tables the engine can read have schedules to lose.
        var projects = (await session.Query<Source>().Where(s => s.AnyTenant()).Select(s => new SourceProject(s.Id, s.ProjectId, s.SourceType)).ToListAsync(ct))
            .Where(s => registry.TryGet(s.SourceType, out var type) && SyncRuns.CanRead(type)).ToDictionary(s => s.Id, s => s.ProjectId);
        var fired = await ScheduledDueAsync(connection, transaction, store.Options.DatabaseSchemaName, ct);

        var rearmed = 0;
        foreach (var bySource in enabled.Select(s => (s.Id, s.SourceId, Why: Lost(states.GetValueOrDefault(s.Id), fired, now, settings.OverdueGrace)))
                     .Where(s => s.Why is not null).GroupBy(s => s.SourceId))
        {
            if (!projects.TryGetValue(bySource.Key, out var project)) continue;
            foreach (var schema in bySource)
                logger.LogWarning("Schedule of schema {Schema} (source {Source}) was lost: {Why}; re-arming it", schema.Id, bySource.Key, schema.Why);
            rearmed += bySource.Count();
            messages.Add(new ArmSyncSchedules(project, bySource.Key, bySource.Select(s => s.Id).ToList(),
                Reason: string.Join("; ", bySource.Select(s => s.Why).Distinct())).ForProject());
        }

        // Runs that hold their schema with nothing queued to run them: ended, so the schedule goes on (CDC snapshots are the
        // consumer's own and have no message).
        var queued = await QueuedRunsAsync(connection, transaction, store.Options.DatabaseSchemaName, ct);
        var held = states.Values.Where(s => s.RunningJobId is { } job && s.RunningSince < now - settings.OverdueGrace && !queued.Contains(job)).ToList();
        if (held.Count > 0)
        {
            var jobIds = held.Select(s => s.RunningJobId!.Value).ToList();
            var lost = await session.Query<SyncJob>().Where(j => j.AnyTenant() && jobIds.Contains(j.Id) && j.Mode != SyncModes.CdcSnapshot).ToListAsync(ct);
            foreach (var job in lost.Where(j => projects.ContainsKey(j.SourceId)))
                messages.Add(new FailLostRun(projects[job.SourceId], job.SourceId, job.SchemaId, job.Id).ForProject());
        }

        session.Store(new ScheduleReconciliation { LastRunAt = now, Node = Environment.MachineName, Rearmed = rearmed });
        await session.SaveChangesAsync(ct);
        await transaction.CommitAsync(ct);
        return messages;
    }

    /// <summary>Why an enabled schema's schedule is lost, or null when it is not: never armed; armed for a time past by more
    /// than the grace; or armed for later with no due message for that time left in the store. A running schema is not
    /// lost: its run's end arms the next.</summary>
    public static string? Lost(SchemaSync? state, ILookup<Guid, DateTimeOffset> scheduled, DateTimeOffset now, TimeSpan grace) =>
        state is null ? "it was never armed"
        : state.RunningJobId is not null ? null
        : state.NextRunAt is not { } next ? "it was not armed"
        : next < now - grace ? $"its run due at {next:O} did not fire"
        : next > now && !scheduled[state.Id].Any(due => (due - next).Duration() <= TimeSpan.FromMilliseconds(1)) ? $"the message due at {next:O} is gone from the store"
        : null;

    /// <summary>Which schemas have a due message waiting, for which time: read from Wolverine's own inbox table.</summary>
    private static async Task<ILookup<Guid, DateTimeOffset>> ScheduledDueAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, CancellationToken ct)
    {
        var due = new List<SyncDue>();
        await using var command = new NpgsqlCommand(
            $"SELECT body FROM \"{schema}\".wolverine_incoming_envelopes WHERE message_type = @type AND status = 'Scheduled'", connection, transaction);
        command.Parameters.AddWithValue("type", typeof(SyncDue).ToMessageTypeName());
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            try
            {
                // The row holds Wolverine's envelope; the message's JSON is its data.
                var envelope = Wolverine.Runtime.Serialization.EnvelopeSerializer.Deserialize(await reader.GetFieldValueAsync<byte[]>(0, ct));
                if (envelope.Data is { } data && JsonSerializer.Deserialize<SyncDue>(data, MessageJson) is { } message) due.Add(message);
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or IndexOutOfRangeException or EndOfStreamException)
            {
                // Not ours to read: the schema it is for is then judged lost and armed again, which is harmless.
            }
        }

        return due.ToLookup(d => d.SchemaId, d => d.DueAt);
    }

    /// <summary>The jobs whose <see cref="RunSyncJob"/> waits in Wolverine's inbox (queued, running, or scheduled for a retry).</summary>
    private static async Task<HashSet<Guid>> QueuedRunsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, CancellationToken ct)
    {
        var jobs = new HashSet<Guid>();
        // Taken by a node (its inbox), or still waiting in the queue every node takes from.
        await using var command = new NpgsqlCommand($"""
            SELECT body FROM "{schema}".wolverine_incoming_envelopes WHERE message_type = @type AND status IN ('Incoming', 'Scheduled')
            UNION ALL SELECT body FROM "{schema}".{SyncRunQueue.Table} WHERE message_type = @type
            """, connection, transaction);
        command.Parameters.AddWithValue("type", typeof(RunSyncJob).ToMessageTypeName());
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            try
            {
                var envelope = Wolverine.Runtime.Serialization.EnvelopeSerializer.Deserialize(await reader.GetFieldValueAsync<byte[]>(0, ct));
                if (envelope.Data is { } data && JsonSerializer.Deserialize<RunSyncJob>(data, MessageJson) is { } run) jobs.Add(run.JobId);
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or IndexOutOfRangeException or EndOfStreamException)
            {
                // Unreadable: its job, if still running, is judged lost only after the grace, and ending it is retryable.
            }
        }

        return jobs;
    }

    private static readonly JsonSerializerOptions MessageJson = new() { PropertyNameCaseInsensitive = true };

    private sealed record EnabledSchema(Guid Id, Guid SourceId);

    private sealed record SourceProject(Guid Id, string ProjectId, string SourceType);
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
