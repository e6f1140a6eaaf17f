using Marten;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// Readiness details of the data plane (SYNC.md §5): how many schedules are overdue (enabled, not running, and due more
/// than the grace ago: the reconciler arms them again on its next pass, so a number that stays is worth a look), how many
/// runs are in progress, and how many schemas' last run failed. Overdue schedules make the check Degraded (still 200: the
/// node itself can serve); failing schemas are the users' to fix and only counted. Three counts over the schemas' sync
/// states, one small document per table: cheap next to a probe's interval.
/// </summary>
public sealed class SyncHealthCheck(IDocumentStore store, SyncSchedulerSettings settings, TimeProvider clock) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
    {
        var now = clock.GetUtcNow();

        await using var session = store.QuerySession();
        var cutoff = now - settings.OverdueGrace;
        var overdue = await session.Query<SchemaSync>()
            .Where(s => s.AnyTenant() && s.RunningJobId == null && s.NextRunAt != null && s.NextRunAt < cutoff).CountAsync(ct);
        var running = await session.Query<SchemaSync>().Where(s => s.AnyTenant() && s.RunningJobId != null).CountAsync(ct);
        var failing = await session.Query<SchemaSync>().Where(s => s.AnyTenant() && s.RunningJobId == null && s.LastStatus == JobStatuses.Failed).CountAsync(ct);
        var reconciled = await session.LoadAsync<ScheduleReconciliation>(ScheduleReconciliation.SingletonId, ct);
        var data = new Dictionary<string, object>
        {
            ["overdue_schedules"] = overdue,
            ["running_syncs"] = running,
            ["failing_schemas"] = failing,
            ["last_reconciled_at"] = reconciled?.LastRunAt.ToString("O") ?? "",
            ["last_reconcile_rearmed"] = reconciled?.Rearmed ?? 0,
        };
        return overdue > 0
            ? HealthCheckResult.Degraded($"{overdue} sync schedule(s) overdue by more than {settings.OverdueGrace.TotalMinutes:0.#} min", data: data)
            : HealthCheckResult.Healthy("Sync schedules", data);
    }
}
