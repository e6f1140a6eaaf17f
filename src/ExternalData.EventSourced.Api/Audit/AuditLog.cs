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
using Weasel.Postgresql;
using Weasel.Postgresql.Tables;
using Wolverine.Http;
using ExternalData.EventSourced.Infrastructure.Messaging;

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

    /// <summary>The entry of a stored event, masked the way history shows it.</summary>
    public static AuditEntry Of(IEvent e)
    {
        var entry = SourceHistoryEndpoint.Entry(e, ApiJson.Options);
        return new AuditEntry
        {
            Id = e.Id, Sequence = e.Sequence, SourceId = e.StreamId, Version = entry.Version, Type = entry.Type, OccurredAt = entry.OccurredAt,
            Actor = entry.Actor, ActorName = entry.Actor.Name, CreatedVia = entry.CreatedVia, CorrelationId = entry.CorrelationId,
            CausationId = entry.CausationId, Summary = entry.Summary, Data = entry.Data,
        };
    }
}

/// <summary>
/// The audit feed's index: a narrow row per event of the store (its sequence, project, stream, type, actor and channel),
/// written by Marten's daemon off the write path (a burst of writes never waits for it). The entries themselves are the
/// events: the feed reads a page's events from the event store and renders them as history does, so a write's data is
/// not stored a second time (ADR 0057).
/// </summary>
public sealed class AuditLogProjection : IProjection
{
    public const string ProjectionName = "AuditLog";
    public const string TableName = "mt_audit_feed";

    private readonly string _insert;

    public AuditLogProjection(string schema)
    {
        Table = new Table(new PostgresqlObjectName(schema, TableName, SchemaUtils.IdentifierUsage.General));
        Table.AddColumn<long>("seq_id").AsPrimaryKey();
        Table.AddColumn<string>("tenant_id").NotNull();
        Table.AddColumn<Guid>("stream_id").NotNull();
        Table.AddColumn<string>("type").NotNull();
        Table.AddColumn<string>("actor_name");
        Table.AddColumn<string>("created_via");
        Table.AddColumn<DateTimeOffset>("timestamp").NotNull();
        // A project's feed, newest first, and the same for one type: what the feed's page and count read.
        Table.Indexes.Add(new IndexDefinition($"ix_{TableName}_tenant_seq") { Columns = ["tenant_id", "seq_id"] });
        Table.Indexes.Add(new IndexDefinition($"ix_{TableName}_tenant_type_seq") { Columns = ["tenant_id", "type", "seq_id"] });
        // One statement a page, idempotent: a page the daemon projects again after a crash adds nothing.
        _insert = $"insert into {Table.Identifier} (seq_id, tenant_id, stream_id, type, actor_name, created_via, timestamp) " +
                  "select * from unnest(?::bigint[], ?::text[], ?::uuid[], ?::text[], ?::text[], ?::text[], ?::timestamptz[]) on conflict (seq_id) do nothing";
    }

    /// <summary>The feed's index table (created with the store's schema; emptied when the projection is rebuilt).</summary>
    public Table Table { get; }

    public Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation)
    {
        var rows = new List<IEvent>(events.Count);
        foreach (var e in events)
        {
            // Marten records an append that rolled back as a "tombstone" event; it is no fact of anyone's.
            if (e.EventTypeName == "tombstone") continue;
            // Sync runs are shown by jobs/, not here (SYNC.md §4): a run's batches would bury the feed's lifecycle facts.
            if (e.Data is ISyncFact) continue;
            rows.Add(e);
        }

        if (rows.Count == 0) return Task.CompletedTask;
        operations.QueueSqlCommand(_insert,
            rows.Select(e => e.Sequence).ToArray(), rows.Select(e => e.TenantId).ToArray(), rows.Select(e => e.StreamId).ToArray(),
            rows.Select(e => e.EventTypeName).ToArray(), rows.Select(e => SourceHistoryEndpoint.Header(e, CallerMetadata.ActorNameHeader)).ToArray(),
            rows.Select(e => SourceHistoryEndpoint.Header(e, CallerMetadata.CreatedViaHeader)).ToArray(), rows.Select(e => e.Timestamp.ToUniversalTime()).ToArray());
        return Task.CompletedTask;
    }

}

/// <summary>GET external_data_sources/audit_log/ [beyond]: every event of the project's sources and stashes, newest
/// first, filterable. Its index is written by the daemon, so it may trail the writes by a moment (see /health/ready), but
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

        var (total, sequences) = await PageAsync(session, take, skip, actor, created_via, type, from, to, ct);
        var events = sequences.Length == 0 ? [] : await session.Events.QueryAllRawEvents().Where(e => sequences.Contains(e.Sequence)).ToListAsync(ct);
        var page = events.OrderByDescending(e => e.Sequence).Select(AuditEntry.Of).ToList();
        return Results.Json(PageLinks.PageOf(page, total, take, skip, context));
    }

    /// <summary>
    /// The page's sequence numbers and the count of every matching entry, in one statement: one snapshot, so the two agree
    /// while the daemon keeps writing. The daemon writes the index in event-sequence order and publishes an event only once
    /// every earlier one has committed or rolled back, so any snapshot of it is a gap-free prefix of the store's order.
    /// Only the filters asked for are in the statement, so each plan can use the index that fits it.
    /// </summary>
    private static async Task<(long Total, long[] Sequences)> PageAsync(
        IQuerySession session, int take, int skip, string? actor, string? createdVia, string? type, DateTimeOffset? from, DateTimeOffset? to, CancellationToken ct)
    {
        var filters = new List<string> { "tenant_id = @tenant" };
        await using var command = new Npgsql.NpgsqlCommand();
        command.Parameters.AddWithValue("tenant", session.TenantId);
        void Filter(string sql, string name, object? value)
        {
            if (value is null or "") return;
            filters.Add(sql);
            command.Parameters.AddWithValue(name, value);
        }

        Filter("actor_name = @actor", "actor", actor);
        Filter("created_via = @via", "via", createdVia);
        Filter("type = @type", "type", type);
        Filter("timestamp >= @from", "from", from);
        Filter("timestamp <= @to", "to", to);
        command.Parameters.AddWithValue("take", take);
        command.Parameters.AddWithValue("skip", skip);
        command.CommandText = $"""
            WITH matched AS (SELECT seq_id FROM {session.DocumentStore.Options.DatabaseSchemaName}.{AuditLogProjection.TableName} WHERE {string.Join(" AND ", filters)})
            SELECT (SELECT count(*) FROM matched), array(SELECT seq_id FROM matched ORDER BY seq_id DESC LIMIT @take OFFSET @skip)
            """;
        await using var connection = session.DocumentStore.Storage.Database.CreateConnection();
        await connection.OpenAsync(ct);
        command.Connection = connection;
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        return (reader.GetInt64(0), await reader.GetFieldValueAsync<long[]>(1, ct));
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
        var audit = new AuditLogProjection(options.DatabaseSchemaName);
        options.Storage.ExtendedSchemaObjects.Add(audit.Table);
        options.Projections.Add(audit, ProjectionLifecycle.Async, AuditLogProjection.ProjectionName,
            // A rebuild starts from an empty feed.
            asyncConfiguration: o => o.DeleteDataInTableOnTeardown(audit.Table.Identifier.QualifiedName));
        return options;
    }
}
