using Microsoft.AspNetCore.Mvc;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using JasperFx.Events;
using Marten;
using Microsoft.Extensions.Options;
using Wolverine.Http;
using ExternalData.EventSourced.Infrastructure.Messaging;

namespace ExternalData.EventSourced.Sources;

/// <summary>One entry of a source's history, as an auditor reads it (API.md §3 row 21).</summary>
public sealed record HistoryEntry(
    long Version, string Type, DateTimeOffset OccurredAt, HistoryActor Actor, string? CreatedVia, string? CorrelationId, string? CausationId,
    string Summary, JsonNode? Data);

public sealed record HistoryActor(string? Id, string? Name);

/// <summary>GET external_data_sources/{id}/history/: the source's events in order, secrets masked, a sentence each.
/// Answers for a deleted source too; another project's id is a 404 (its events are not in this project).
/// What users did to its tables' syncs (reload, resync, cancel, delete_data) is in it too; <c>?include=syncs</c> adds
/// what the service did there on its own (runs started, ended, watermarks, schedules). Entries are in the order they
/// were recorded (SYNC.md §4); a sync entry's <c>version</c> is its own stream's.</summary>
public static class SourceHistoryEndpoint
{
    public const string Secret = "[secret]";
    public const string IncludeSyncs = "syncs";

    [WolverineGet("/api/projects/{project_id}/external_data_sources/{id}/history")]
    [ProducesResponseType<Page<HistoryEntry>>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(
        Guid id, string? limit, string? offset, string? type, string? since, string? until, string? include, IQuerySession session,
        IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json, HttpContext context, CancellationToken ct)
    {
        if (include is not (null or "" or IncludeSyncs))
            return Results.Problem(Problems.Validation($"include must be '{IncludeSyncs}'.", "include", "invalid_choice"));
        if (Paging.Parse(limit, offset) is not ({ } take, { } skip)) return Results.Problem(Paging.Problem(limit));
        var (from, to, badTime) = TimeRange.Parse(since, until);
        if (badTime is not null) return Results.Problem(badTime);

        var page = await ReadAsync(session, id, take, skip, type, from, to, json.Value.SerializerOptions, ct, include == IncludeSyncs);
        return page is null ? Results.Problem(Problems.NotFound()) : Results.Json(PageLinks.PageOf(page.Value.Entries, page.Value.Total, take, skip, context));
    }

    /// <summary>A page of the history, or null when the project has no such source (every channel reads it this way).</summary>
    public static async Task<(long Total, IReadOnlyList<HistoryEntry> Entries)?> ReadAsync(
        IQuerySession session, Guid id, int take, int skip, string? type, DateTimeOffset? from, DateTimeOffset? to, JsonSerializerOptions options, CancellationToken ct,
        bool includeSyncs = false)
    {
        if (!await session.Events.QueryAllRawEvents().Where(e => e.StreamId == id).AnyAsync(ct)) return null;

        // Marten keeps no statistics for raw event queries: the count is its own (cheap, indexed) query.
        IQueryable<IEvent> query;
        if (includeSyncs)
        {
            var syncStreams = (await session.Query<SourceSchema>().Where(s => s.SourceId == id).Select(s => s.Id).ToListAsync(ct)).Append(id).ToArray();
            query = session.Events.QueryAllRawEvents().Where(e => syncStreams.Contains(e.StreamId));
            if (!string.IsNullOrEmpty(type)) query = query.Where(e => e.EventTypeName == type);
            if (from is { } since) query = query.Where(e => e.Timestamp >= since);
            if (to is { } until) query = query.Where(e => e.Timestamp <= until);
            var count = await query.CountAsync(ct);
            var recorded = await query.OrderBy(e => e.Sequence).Skip(skip).Take(take).ToListAsync(ct);
            return (count, recorded.Select(e => Entry(e, options)).ToList());
        }

        query = session.Events.QueryAllRawEvents().Where(e => e.StreamId == id);
        if (!string.IsNullOrEmpty(type)) query = query.Where(e => e.EventTypeName == type);
        if (from is { } f) query = query.Where(e => e.Timestamp >= f);
        if (to is { } t) query = query.Where(e => e.Timestamp <= t);

        // What users did to its tables' syncs (a reload, a resync, a cancel, a delete_data) is its history too (SYNC.md §4);
        // what the service did on its own there is not, unless asked. Only the event metadata says who did it, so the
        // sequence numbers are picked in SQL and the page is then read as events.
        var tables = (await session.Query<SourceSchema>().Where(s => s.SourceId == id).Select(s => s.Id).ToListAsync(ct)).ToArray();
        var userSyncActions = tables.Length == 0 ? [] : await UserSyncActionsAsync(session, tables, type, from, to, ct);
        if (userSyncActions.Count == 0)
        {
            var total = await query.CountAsync(ct);
            var events = await query.OrderBy(e => e.Version).Skip(skip).Take(take).ToListAsync(ct);
            return (total, events.Select(e => Entry(e, options)).ToList());
        }

        var sequences = (await query.Select(e => e.Sequence).ToListAsync(ct)).Concat(userSyncActions).Order().ToList();
        var page = sequences.Skip(skip).Take(take).ToArray();
        var paged = await session.Events.QueryAllRawEvents().Where(e => page.Contains(e.Sequence)).OrderBy(e => e.Sequence).ToListAsync(ct);
        return (sequences.Count, paged.Select(e => Entry(e, options)).ToList());
    }

    /// <summary>The sequence numbers of the events users recorded on these tables' sync streams (not the service's own).</summary>
    private static async Task<List<long>> UserSyncActionsAsync(IQuerySession session, Guid[] streams, string? type, DateTimeOffset? from, DateTimeOffset? to, CancellationToken ct)
    {
        var schema = session.DocumentStore.Options.Events.DatabaseSchemaName;
        await using var connection = session.DocumentStore.Storage.Database.CreateConnection();
        await connection.OpenAsync(ct);
        await using var command = new Npgsql.NpgsqlCommand($"""
            SELECT seq_id FROM {schema}.mt_events
             WHERE tenant_id = @tenant AND stream_id = ANY(@streams) AND coalesce(headers->>'{CallerMetadata.CreatedViaHeader}', '') <> '{Channel.System}'
               AND (@type::text IS NULL OR type = @type) AND (@from::timestamptz IS NULL OR timestamp >= @from) AND (@to::timestamptz IS NULL OR timestamp <= @to)
            """, connection);
        command.Parameters.AddWithValue("tenant", session.TenantId);
        command.Parameters.AddWithValue("streams", streams);
        command.Parameters.AddWithValue("type", string.IsNullOrEmpty(type) ? DBNull.Value : type);
        command.Parameters.AddWithValue("from", from is { } f ? f : DBNull.Value);
        command.Parameters.AddWithValue("to", to is { } t ? t : DBNull.Value);
        var sequences = new List<long>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) sequences.Add(reader.GetInt64(0));
        return sequences;
    }

    public static HistoryEntry Entry(IEvent e, JsonSerializerOptions options) => new(
        e.Version,
        e.EventTypeName,
        e.Timestamp,
        new HistoryActor(Header(e, CallerMetadata.ActorIdHeader), Header(e, CallerMetadata.ActorNameHeader)),
        Header(e, CallerMetadata.CreatedViaHeader),
        e.CorrelationId,
        e.CausationId,
        Summary(e.Data),
        Mask(JsonSerializer.SerializeToNode(e.Data, e.Data.GetType(), options)));

    /// <summary>A metadata header of the event (the caller's id, name, channel), as text.</summary>
    internal static string? Header(IEvent e, string key) => e.Headers is { } headers && headers.TryGetValue(key, out var value) ? value?.ToString() : null;

    /// <summary>Every sealed blob (the only form a secret takes in an event) shows as "[secret]".</summary>
    public static JsonNode? Mask(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o when o.Count == 2 && o.ContainsKey("nonce") && o.ContainsKey("ciphertext"):
                return JsonValue.Create(Secret);
            case JsonObject o:
                foreach (var key in o.Select(kv => kv.Key).ToList()) o[key] = Mask(o[key]?.DeepClone());
                return o;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++) a[i] = Mask(a[i]?.DeepClone());
                return a;
            default:
                return node;
        }
    }

    /// <summary>One human sentence per fact.</summary>
    public static string Summary(object data) => data switch
    {
        SourceCreated c => $"{c.SourceType} source created{(c.Prefix is null ? "" : $" with prefix '{c.Prefix}'")}, {Tables(c.TableCount)} discovered",
        SchemaAdded a => a.Settings.ShouldSync ? $"table {a.Name} added, enabled for {a.Settings.SyncType ?? "no"} sync" : $"table {a.Name} added, disabled",
        SourceUpdated u => $"{string.Join(", ", u.ChangedFields.Select(f => f.Replace('_', ' ')))} changed",
        SchemasBulkUpdated b => BulkSummary(b),
        SchemasRefreshed r => $"schemas refreshed: {r.Added.Count} added, {r.Removed.Count} removed, {r.Disabled.Count} disabled" +
                              (r.ColumnDrift.Count > 0 ? $", columns changed in {Tables(r.ColumnDrift.Count)}" : ""),
        SourceDeleted { CleanupPending: true } => "source deleted; what it left at the provider (CDC slot and publication, webhook) is removed next, then its secrets are destroyed",
        SourceDeleted => "source deleted; its secrets were destroyed",
        WebhookRegistered w => w.Reused ? $"webhook at {w.Url} kept ({w.EnabledEvents.Count} events)" :
            $"webhook registered at {w.Url} ({w.EnabledEvents.Count} events)" + (w.ReplacedEndpointIds.Count > 0 ? $", replacing {w.ReplacedEndpointIds.Count} endpoint(s) whose secret we lacked" : ""),
        WebhookRegistrationFailed f => $"webhook registration failed: {f.Error}",
        WebhookDeleted d => d.ProviderDeleted ? "webhook deleted at the provider" : $"webhook removed here; the provider's endpoint was not deleted: {d.Error}",
        SourceSecretsShredded => "the deleted source's secrets were destroyed",
        CdcEnabled e => $"CDC enabled ({(e.ManagementMode == SourceTypes.ChangeDataCapture.CdcModes.Managed ? "managed" : "self-managed")}): slot {e.SlotName} " +
                        $"{(e.SlotCreated ? "created" : "adopted")} at {e.ConsistentPoint}, publication {e.PublicationName}" +
                        (e.PublishedTables.Count > 0 ? $" with {Tables(e.PublishedTables.Count)}" : ""),
        CdcDisabled e => e.CleanupError is null
            ? $"CDC disabled; slot {e.SlotName} {(e.SlotDropped ? "dropped" : "was already gone")}" + (e.SchemasReset.Count > 0 ? $", {Tables(e.SchemasReset.Count)} reset" : "")
            : $"CDC disabled, but the slot and publication could not be removed: {e.CleanupError}",
        CdcSettingsChanged e => $"CDC settings changed: {string.Join(", ", e.ChangedFields.Select(f => f.Replace('_', ' ')))}",
        CdcPublicationTablesChanged e => $"CDC publication {e.PublicationName}: " + string.Join("; ", new[]
        {
            e.Added.Count > 0 ? $"added {string.Join(", ", e.Added)}" : null,
            e.Dropped.Count > 0 ? $"dropped {string.Join(", ", e.Dropped)}" : null,
        }.Where(p => p is not null)),
        CdcResourcesDropped e => $"deleted source's CDC resources removed (attempt {e.Attempt})",
        CdcCleanupAttemptFailed e => $"clean-up attempt {e.Attempt} failed: {e.Error}; retrying at {e.NextAttemptAt.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}",
        CdcCleanupAbandoned e => $"clean-up abandoned after {e.Attempts} attempts; run on the source: {e.RemediationSql}",
        SyncRunStarted r => $"{r.Trigger} run of table {r.SchemaName} started (job {r.JobId})",
        SyncRunCompleted r => $"run {r.JobId} completed: {r.Rows.ToString(CultureInfo.InvariantCulture)} rows in {r.Table.Schema}.{r.Table.Name}",
        SyncRunFailed r => $"run {r.JobId} failed: {r.Error}",
        SyncJobStarted j => $"{j.Trigger} run of table {j.SchemaName} started",
        SyncBatchLoaded b => $"batch {b.Batch.ToString(CultureInfo.InvariantCulture)}: {b.Rows.ToString(CultureInfo.InvariantCulture)} rows, {b.TotalRows.ToString(CultureInfo.InvariantCulture)} so far",
        SyncLoadResumed r => $"load resumed after batch {r.Batches.ToString(CultureInfo.InvariantCulture)}: {r.KeptRows.ToString(CultureInfo.InvariantCulture)} rows kept, " +
                             $"{r.DroppedRows.ToString(CultureInfo.InvariantCulture)} dropped, {r.ReadAgainRows.ToString(CultureInfo.InvariantCulture)} changed upstream read again",
        SyncJobCompleted j => $"run completed: {j.Rows.ToString(CultureInfo.InvariantCulture)} rows in {j.Batches.ToString(CultureInfo.InvariantCulture)} batches",
        SyncJobFailed j => $"run failed: {j.Error}",
        SyncJobCancelled j => $"run cancelled: {j.Reason}",
        SyncRunCancelled r => $"run {r.JobId} cancelled: {r.Reason}",
        SyncWatermarkAdvanced w => $"{w.Field} watermark advanced to {w.Watermark} (batch {w.Batch.ToString(CultureInfo.InvariantCulture)})",
        SyncStateReset r => r.TableDropped ? $"synced data deleted: {r.Reason}" : $"sync state reset: {r.Reason}",
        SyncScheduled s => (s.DueAt is { } due ? $"next run scheduled for {due:O} ({s.Frequency})" : "no run scheduled")
            + (s.Reason is { } why ? $"; the schedule was lost ({why}) and is armed again" : ""),
        CdcChangesApplied a => $"CDC applied {a.Changes.ToString(CultureInfo.InvariantCulture)} changes in {a.Transactions.ToString(CultureInfo.InvariantCulture)} transactions, up to {a.Position}",
        CdcStreamFailed f => $"CDC stopped streaming: {f.Error}",
        Credentials.CredentialsStashed c => $"{c.SourceType} credentials stored, usable once until {c.ExpiresAt.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}",
        Credentials.CredentialsConsumed c => $"stored credentials used to set up source {c.SourceId}; their key was destroyed",
        Credentials.CredentialsExpired => "stored credentials expired unused; their key was destroyed",
        Credentials.ConnectLinks.ConnectLinkIssued l => $"connect link issued for {l.SourceType}",
        Credentials.ConnectLinks.ConnectLinkSpent l => $"connect link used to store credentials {l.CredentialId}",
        _ => data.GetType().Name,
    };

    private static string BulkSummary(SchemasBulkUpdated b)
    {
        var enabled = b.Schemas.Where(s => s.ChangedFields.Contains("should_sync") && s.Settings.ShouldSync).ToList();
        var disabled = b.Schemas.Count(s => s.ChangedFields.Contains("should_sync") && !s.Settings.ShouldSync);
        var parts = new List<string>();
        foreach (var group in enabled.GroupBy(s => s.Settings.SyncType ?? "unset"))
            parts.Add($"{Tables(group.Count())} enabled for {group.Key.Replace('_', ' ')} sync");
        if (disabled > 0) parts.Add($"{Tables(disabled)} disabled");
        var other = b.Schemas.Count(s => !s.ChangedFields.Contains("should_sync"));
        if (other > 0) parts.Add($"settings of {Tables(other)} changed");
        return string.Join("; ", parts);
    }

    private static string Tables(int count) => count == 1 ? "1 table" : $"{count.ToString(CultureInfo.InvariantCulture)} tables";
}
