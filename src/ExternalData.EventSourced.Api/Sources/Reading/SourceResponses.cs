using System.Text.Json;
using Marten;
using Microsoft.Extensions.Options;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// Writes sources as the API shows them (ref §4.1) straight onto the response: each source's own fields, then its
/// schemas streamed from the store in name order, so a page of wide sources is never held in memory at once.
/// </summary>
public static class SourceResponses
{
    private const int FlushThreshold = 64 * 1024;

    /// <summary>RFC 7240 <c>Prefer: return=minimal</c>: the caller wants the source's own fields, not its schemas.</summary>
    public static bool PrefersMinimal(HttpContext context) =>
        context.Request.Headers["Prefer"].Any(v => v?.Contains("return=minimal", StringComparison.OrdinalIgnoreCase) == true);

    /// <summary>One source. Its schemas come from <see cref="SourceDetails.Schemas"/> when filled, else from
    /// <paramref name="read"/> or <paramref name="schemasFrom"/> (one round trip, see <see cref="SourceView"/>), else the key
    /// is left out.</summary>
    public static IResult Source(SourceDetails source, bool withSchemas, IQuerySession? schemasFrom = null, int status = StatusCodes.Status200OK,
        string? location = null, SourceView? read = null) =>
        new Written(status, location, async (writer, options, flush, ct) =>
        {
            var view = read ?? (schemasFrom is null ? null
                : await SourceView.ReadAsync(schemasFrom, source.Id, withSource: false, withSchemas: withSchemas && source.Schemas is null, ct));
            if (view is not null) source.WithSync(view.Sync);
            var schemas = source.Schemas is { } held ? held.ToAsyncEnumerable()
                : withSchemas && schemasFrom is not null ? SchemasOf(schemasFrom, source, ct, view?.Sync, view?.Held) : null;
            await WriteSourceAsync(writer, source, schemas, options, flush, ct);
        });

    /// <summary>A page of sources (ordered by id, newest first) with every schema of each, in one streamed query.</summary>
    public static IResult Page(IReadOnlyList<SourceDetails> page, long count, string? next, string? previous, IQuerySession session) =>
        new Written(StatusCodes.Status200OK, null, async (writer, options, flush, ct) =>
        {
            writer.WriteStartObject();
            writer.WriteNumber("count", count);
            writer.WriteString("next", next);
            writer.WriteString("previous", previous);
            writer.WritePropertyName("results");
            writer.WriteStartArray();
            var ids = page.Select(s => s.Id).ToArray();
            var stats = await WebhookStats.ForSourcesAsync(session, [.. page.Where(s => s.SupportsWebhooks).Select(s => s.Id)], ct);
            var sync = await SyncViews.ForSourcesAsync(session, ids, ct);
            var query = session.Query<SourceSchema>().Where(s => ids.Contains(s.SourceId) && !s.Removed)
                .OrderByDescending(s => s.SourceId).ThenBy(s => s.Name);
            await using var schemas = QueryableExtensions.ToAsyncEnumerable(query, ct).GetAsyncEnumerator(ct);
            var pending = await schemas.MoveNextAsync();
            foreach (var source in page)
            {
                await WriteSourceAsync(writer, source.WithSync(sync[source.Id]), Take(source.Id), options, flush, ct);
            }

            writer.WriteEndArray();
            writer.WriteEndObject();

            // The schemas arrive ordered by source id (descending, as the page is), then name: each source takes its run.
            async IAsyncEnumerable<SchemaDetails> Take(Guid sourceId)
            {
                while (pending && schemas.Current.SourceId == sourceId)
                {
                    yield return SchemaDetails.From(schemas.Current).With(stats).WithSync(sync[sourceId].States.GetValueOrDefault(schemas.Current.Id));
                    pending = await schemas.MoveNextAsync();
                }
            }
        });

    /// <summary>The source's live schemas in name order: the ones <paramref name="held"/> when a read holds them all, else
    /// streamed from the store.</summary>
    public static async IAsyncEnumerable<SchemaDetails> SchemasOf(
        IQuerySession session, SourceDetails source, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct,
        SourceSyncView? sync = null, IReadOnlyList<SourceSchema>? held = null)
    {
        var sourceId = source.Id;
        var stats = await WebhookStats.ForSourceAsync(session, source, ct);
        var schemas = held?.ToAsyncEnumerable()
            ?? QueryableExtensions.ToAsyncEnumerable(session.Query<SourceSchema>().Where(s => s.SourceId == sourceId && !s.Removed).OrderBy(s => s.Name), ct);
        await foreach (var schema in schemas.WithCancellation(ct))
        {
            yield return SchemaDetails.From(schema).With(stats).WithSync(sync?.States.GetValueOrDefault(schema.Id));
        }
    }

    private static async Task WriteSourceAsync(
        Utf8JsonWriter writer, SourceDetails source, IAsyncEnumerable<SchemaDetails>? schemas, JsonSerializerOptions options, Func<Task> flush, CancellationToken ct)
    {
        var held = source.Schemas;
        source.Schemas = null;
        using (var fields = JsonSerializer.SerializeToDocument(source, options))
        {
            source.Schemas = held;
            writer.WriteStartObject();
            foreach (var property in fields.RootElement.EnumerateObject())
                if (!property.NameEquals("schemas")) property.WriteTo(writer);
        }

        if (schemas is not null)
        {
            writer.WritePropertyName("schemas");
            writer.WriteStartArray();
            await foreach (var schema in schemas.WithCancellation(ct))
            {
                JsonSerializer.Serialize(writer, schema, options);
                if (writer.BytesPending > FlushThreshold) await flush();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndObject();
        await flush();
    }

    /// <summary>Writes into the response's pipe (never a synchronous stream write) and pushes what is buffered on each flush.</summary>
    private sealed class Written(int status, string? location, Func<Utf8JsonWriter, JsonSerializerOptions, Func<Task>, CancellationToken, Task> write) : IResult
    {
        public async Task ExecuteAsync(HttpContext context)
        {
            var options = context.RequestServices.GetRequiredService<IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions>>().Value.SerializerOptions;
            context.Response.StatusCode = status;
            context.Response.ContentType = "application/json; charset=utf-8";
            if (location is not null) context.Response.Headers.Location = location;
            var body = context.Response.BodyWriter;
            await using var writer = new Utf8JsonWriter(body);
            await write(writer, options, async () =>
            {
                await writer.FlushAsync(context.RequestAborted);
                await body.FlushAsync(context.RequestAborted);
            }, context.RequestAborted);
        }
    }
}
