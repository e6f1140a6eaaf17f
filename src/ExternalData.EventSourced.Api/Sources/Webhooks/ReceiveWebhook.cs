using System.Text;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Sync;
using ExternalData.EventSourced.SourceTypes.Webhooks;
using Marten;
using JasperFx;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// One accepted provider delivery, kept until the schema's next run drains it into the warehouse (an inbox). Its own
/// document, keyed by source and provider event id, so a redelivery is the same row and deliveries never touch the
/// source's stream: a burst of them does not queue behind, or lock out, a PATCH of the source. The payload is sealed
/// under the source's data key, so deleting the source shreds its deliveries too. A drained delivery is marked
/// <see cref="ProcessedAt"/> in the transaction that merged it, and trimmed after <c>Sync:WebhookRetention</c>.
/// </summary>
public sealed class WebhookDelivery
{
    public string Id { get; set; } = "";
    public Guid SourceId { get; set; }
    public Guid SchemaId { get; set; }
    public string SchemaName { get; set; } = "";
    public string EventId { get; set; } = "";
    public string? EventType { get; set; }
    public string ObjectType { get; set; } = "";
    public DateTimeOffset ReceivedAt { get; set; }
    /// <summary>When the provider made the event (Unix seconds, its clock): a drain applies the oldest first.</summary>
    public long EventCreated { get; set; }
    public DateTimeOffset? ProcessedAt { get; set; }
    public SealedSecrets Payload { get; set; } = null!;

    public static string IdOf(Guid sourceId, string eventId) => $"{sourceId:N}:{eventId}";
}

public sealed record WebhookReceipt(string Status, Guid? SchemaId = null);

/// <summary>POST /public/webhooks/dwh/{source_id} (API.md §3 row 22, ref §12.1): no API key; the signature is the
/// authority. Verified over the raw body with the stored secret by the provider's own library.</summary>
public static class ReceiveWebhookEndpoint
{
    public const string Limiter = "webhook-deliveries";

    [WolverinePost("/public/webhooks/dwh/{source_id}")]
    [Microsoft.AspNetCore.RateLimiting.EnableRateLimiting(Limiter)]
    [ProducesResponseType<WebhookReceipt>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string source_id, HttpContext context, IDocumentStore store, SourceTypeRegistry registry, SecretsCipher cipher, TimeProvider clock)
    {
        var ct = context.RequestAborted;
        if (!Guid.TryParse(source_id, out var sourceId)) return Results.Problem(Problems.NotFound());
        Source? source;
        await using (var any = store.QuerySession())
            source = await any.Query<Source>().Where(s => s.AnyTenant() && s.Id == sourceId).FirstOrDefaultAsync(ct);
        if (source?.Webhook is not { SigningSecret: { } sealedSecret } || registry.Get(source.SourceType) is not IWebhookProvider provider)
            return Results.Problem(Problems.NotFound());

        await using var session = store.LightweightSession(source.ProjectId);
        var keyDocument = await session.LoadAsync<DataKey>(sourceId, ct);
        if (keyDocument is null) return Results.Problem(Problems.NotFound());
        var key = cipher.Unwrap(keyDocument);
        var secret = cipher.Unseal(sealedSecret, key, sourceId)["signing_secret"]!.GetValue<string>();

        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        var body = await reader.ReadToEndAsync(ct);
        var verified = provider.Verify(body, context.Request.Headers[provider.SignatureHeader].FirstOrDefault(), secret, clock.GetUtcNow());
        if (!verified.Valid) return Results.Problem(Problems.Validation(verified.Error!, null, "invalid_signature"));
        if (verified.EventId is null || verified.ObjectType is null || provider.TableForObjectType(verified.ObjectType) is not { } table)
            return Results.Json(new WebhookReceipt("ignored"));

        var schema = await session.Query<SourceSchema>().Where(s => s.SourceId == sourceId && s.Name == table && !s.Removed).FirstOrDefaultAsync(ct);
        // Only a table synced by webhook drains its deliveries; one polled (or disabled) would only pile them up. Its first
        // webhook run polls it whole, so nothing skipped here is missed.
        if (schema?.Settings is not { ShouldSync: true, SyncType: SyncTypes.Webhook }) return Results.Json(new WebhookReceipt("ignored", schema?.Id));

        session.Insert(new WebhookDelivery
        {
            Id = WebhookDelivery.IdOf(sourceId, verified.EventId), SourceId = sourceId, SchemaId = schema.Id, SchemaName = schema.Name, EventId = verified.EventId,
            EventType = verified.EventType, ObjectType = verified.ObjectType, ReceivedAt = clock.GetUtcNow(),
            EventCreated = (provider as IObjectSource)?.ChangeOf(body)?.Created ?? 0,
            Payload = cipher.Seal(new JsonObject { ["event"] = body }, key, sourceId),
        });
        WebhookStats.Count(session, sourceId, schema.Id, clock.GetUtcNow());
        try
        {
            await session.SaveChangesAsync(ct);
        }
        catch (DocumentAlreadyExistsException)
        {
            return Results.Json(new WebhookReceipt("duplicate", schema.Id));
        }

        return Results.Json(new WebhookReceipt("accepted", schema.Id));
    }
}

/// <summary>Per schema: how many deliveries arrived and when the last did, counted as they arrive (one upsert per
/// delivery, in its transaction, so a duplicate that is refused is not counted), never by scanning the inbox, which a
/// drain empties and retention trims.</summary>
public static class WebhookStats
{
    public const string Table = "ed_webhook_counters";

    /// <summary>The counters' table, made and migrated by Marten with the rest of the schema.</summary>
    public static Weasel.Postgresql.Tables.Table Definition(string schema)
    {
        var table = new Weasel.Postgresql.Tables.Table(new Weasel.Postgresql.PostgresqlObjectName(schema, Table, Weasel.Postgresql.SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("tenant_id").AsPrimaryKey();
        table.AddColumn<Guid>("schema_id").AsPrimaryKey();
        table.AddColumn<Guid>("source_id").NotNull();
        table.AddColumn<long>("received").NotNull();
        table.AddColumn("last_at", "timestamptz").NotNull();
        table.Indexes.Add(new Weasel.Postgresql.Tables.IndexDefinition($"ix_{Table}_source") { Columns = ["tenant_id", "source_id"] });
        return table;
    }

    public static void Count(IDocumentSession session, Guid sourceId, Guid schemaId, DateTimeOffset at) =>
        session.QueueSqlCommand($"""
            INSERT INTO {session.DocumentStore.Options.DatabaseSchemaName}.{Table} AS c (tenant_id, schema_id, source_id, received, last_at) VALUES (?, ?, ?, 1, ?)
            ON CONFLICT (tenant_id, schema_id) DO UPDATE SET received = c.received + 1, last_at = greatest(c.last_at, EXCLUDED.last_at)
            """, session.TenantId, schemaId, sourceId, at);

    /// <summary>A source of a type without webhooks never has a delivery (the inbound route refuses it), so its
    /// read skips the query: a retrieve of a Postgres source is one round trip fewer.</summary>
    public static Task<Dictionary<Guid, (long Count, DateTimeOffset Last)>> ForSourceAsync(IQuerySession session, SourceDetails source, CancellationToken ct) =>
        ForSourcesAsync(session, source.SupportsWebhooks ? [source.Id] : [], ct);

    public static async Task<Dictionary<Guid, (long Count, DateTimeOffset Last)>> ForSourcesAsync(IQuerySession session, Guid[] sourceIds, CancellationToken ct)
    {
        if (sourceIds.Length == 0) return [];
        var rows = await session.QueryAsync<string>(
            $"select coalesce(json_agg(json_build_object('id', schema_id, 'count', received, 'last', last_at))::text, '[]') from " +
            $"{session.DocumentStore.Options.DatabaseSchemaName}.{Table} where tenant_id = ? and source_id = any(?)",
            ct, session.TenantId, sourceIds);
        var result = new Dictionary<Guid, (long, DateTimeOffset)>();
        foreach (var row in JsonNode.Parse(rows.Single())!.AsArray())
            result[Guid.Parse(row!["id"]!.GetValue<string>())] = (row["count"]!.GetValue<long>(), row["last"]!.GetValue<DateTimeOffset>());
        return result;
    }

    public static SchemaDetails With(this SchemaDetails details, Dictionary<Guid, (long Count, DateTimeOffset Last)> stats)
    {
        if (stats.TryGetValue(details.Id, out var received)) (details.WebhookEventsReceived, details.LastWebhookAt) = received;
        return details;
    }
}
