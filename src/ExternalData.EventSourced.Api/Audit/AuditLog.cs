using Microsoft.AspNetCore.Mvc;
using System.Globalization;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using JasperFx.Events;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Wolverine.Http;

namespace ExternalData.EventSourced.Audit;

/// <summary>One line of the project's audit feed: a history entry of any source or stash, with its stream.</summary>
public sealed class AuditEntry
{
    public Guid Id { get; set; }
    public long Sequence { get; set; }
    public Guid SourceId { get; set; }
    public long Version { get; set; }
    public string Type { get; set; } = "";
    public DateTimeOffset OccurredAt { get; set; }
    public HistoryActor Actor { get; set; } = new(null, null);
    public string? ActorName { get; set; }
    public string? CreatedVia { get; set; }
    public string? CorrelationId { get; set; }
    public string? CausationId { get; set; }
    public string Summary { get; set; } = "";
    public JsonNode? Data { get; set; }
}

/// <summary>
/// The first async projection: every event of the store becomes an entry, written by Marten's daemon off the write
/// path (a burst of writes never waits for it). Entries are API-shaped and masked the way history shows them.
/// </summary>
public sealed partial class AuditLogProjection : EventProjection
{
    public const string ProjectionName = "AuditLog";

    public AuditLogProjection()
    {
        Name = ProjectionName;
        // A rebuild starts from an empty feed.
        Options.DeleteViewTypeOnTeardown<AuditEntry>();
    }

    public override ValueTask ApplyAsync(IDocumentOperations operations, IEvent e, CancellationToken cancellation)
    {
        // Marten records an append that rolled back as a "tombstone" event; it is no fact of anyone's.
        if (e.EventTypeName == "tombstone") return ValueTask.CompletedTask;
        // Sync runs are shown by jobs/, not here (SYNC.md §4): a run's batches would bury the feed's lifecycle facts.
        if (e.Data is ISyncFact) return ValueTask.CompletedTask;
        var entry = SourceHistoryEndpoint.Entry(e, ApiJson.Options);
        operations.ForTenant(e.TenantId).Store(new AuditEntry
        {
            Id = e.Id, Sequence = e.Sequence, SourceId = e.StreamId, Version = entry.Version, Type = entry.Type, OccurredAt = entry.OccurredAt,
            Actor = entry.Actor, ActorName = entry.Actor.Name, CreatedVia = entry.CreatedVia, CorrelationId = entry.CorrelationId,
            CausationId = entry.CausationId, Summary = entry.Summary, Data = entry.Data,
        });
        return ValueTask.CompletedTask;
    }
}

/// <summary>GET external_data_sources/audit_log/ [beyond]: every event of the project's sources and stashes, newest
/// first, filterable. Served by the async projection, so it may trail the writes by a moment (see /health/ready), but
/// it never shows an event before an earlier one: its order is the event store's, a source's own events in the order
/// they were committed (docs/architecture.md, "The audit feed's order").</summary>
public static class AuditLogEndpoint
{
    [WolverineGet("/api/projects/{project_id}/external_data_sources/audit_log")]
    [ProducesResponseType<Page<AuditEntry>>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(
        string? limit, string? offset, string? actor, string? created_via, string? type, string? since, string? until, IQuerySession session, HttpContext context,
        CancellationToken ct)
    {
        if (Paging.Parse(limit, offset) is not ({ } take, { } skip)) return Results.Problem(Paging.Problem(limit));
        var (from, to, badTime) = TimeRange.Parse(since, until);
        if (badTime is not null) return Results.Problem(badTime);

        // The daemon writes the feed in event-sequence order and publishes an event only once every earlier one has
        // committed or rolled back, so what is visible at any moment is a gap-free prefix of the store's order. Bounding
        // the page and its count by the head read first makes them one snapshot while the daemon keeps writing (read
        // apart, a count could include entries the page predates).
        var head = await session.Query<AuditEntry>().OrderByDescending(e => e.Sequence).Select(e => e.Sequence).FirstOrDefaultAsync(ct);
        IQueryable<AuditEntry> query = session.Query<AuditEntry>().Where(e => e.Sequence <= head);
        if (!string.IsNullOrEmpty(actor)) query = query.Where(e => e.ActorName == actor);
        if (!string.IsNullOrEmpty(created_via)) query = query.Where(e => e.CreatedVia == created_via);
        if (!string.IsNullOrEmpty(type)) query = query.Where(e => e.Type == type);
        if (from is { } start) query = query.Where(e => e.OccurredAt >= start);
        if (to is { } end) query = query.Where(e => e.OccurredAt <= end);
        // A count of its own rather than Marten's Stats (a count window that reads every matching entry's JSON).
        var page = await query.OrderByDescending(e => e.Sequence).Skip(skip).Take(take).ToListAsync(ct);
        long total = await query.CountAsync(ct);
        return Results.Json(PageLinks.PageOf(page, total, take, skip, context));
    }
}

/// <summary>Readiness details: how far each async projection trails the event store (0 = caught up).</summary>
public sealed class ProjectionLagCheck(IDocumentStore store) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
    {
        var progress = await store.Advanced.AllProjectionProgress(token: ct);
        var highWater = progress.FirstOrDefault(p => p.ShardName == ShardState.HighWaterMark)?.Sequence ?? 0;
        var statistics = await store.Advanced.FetchEventStoreStatistics(token: ct);
        var audit = progress.FirstOrDefault(p => p.ShardName.StartsWith(AuditLogProjection.ProjectionName, StringComparison.Ordinal))?.Sequence ?? 0;
        var data = new Dictionary<string, object>
        {
            ["event_sequence"] = statistics.EventSequenceNumber,
            ["high_water_mark"] = highWater,
            ["audit_log_sequence"] = audit,
            ["audit_log_lag"] = Math.Max(0, statistics.EventSequenceNumber - audit),
        };
        return HealthCheckResult.Healthy("Async projections", data);
    }
}

public static class AuditConfiguration
{
    public static StoreOptions ConfigureAudit(this StoreOptions options)
    {
        options.Projections.Add(new AuditLogProjection(), ProjectionLifecycle.Async);
        options.Schema.For<AuditEntry>().MultiTenanted().Index(x => x.Sequence).Duplicate(x => x.Type).Duplicate(x => x.ActorName!).Duplicate(x => x.CreatedVia!);
        return options;
    }
}
