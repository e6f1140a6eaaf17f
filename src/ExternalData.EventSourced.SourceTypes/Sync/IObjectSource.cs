using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.SourceTypes.Sync;

/// <summary>
/// A source type whose tables are lists of JSON objects behind an HTTP API (Stripe), listed newest first by their creation
/// time, with an id as their key. The warehouse side turns each object's top-level fields into columns, in the types
/// <see cref="IObjectRead.WarehouseTypeOf"/> says. Knows nothing of Marten, Wolverine or the warehouse.
/// </summary>
public interface IObjectSource
{
    /// <summary>A read of one table with the source's stored config (decrypted, in memory only).</summary>
    IObjectRead OpenObjects(JsonObject config, string table);

    /// <summary>The object change a stored webhook delivery carries (its raw body), or null when it carries none.</summary>
    ObjectChange? ChangeOf(string deliveryBody);
}

/// <summary>Objects created in [<see cref="CreatedFrom"/>, <see cref="CreatedTo"/>] (Unix seconds, either open), newest
/// first, after the object <see cref="StartingAfter"/> of the previous page.</summary>
public sealed record ObjectQuery(long? CreatedFrom, long? CreatedTo, string? StartingAfter, int Limit);

/// <summary>One page of a list, newest first. <see cref="ServerTime"/>: the source's own clock when it answered.</summary>
public sealed record ObjectPage(IReadOnlyList<JsonObject> Objects, bool HasMore, DateTimeOffset? ServerTime);

/// <summary>What happened to one object: its state after the change (for a deletion, its last state), and when, by the
/// source's clock. <see cref="EventId"/> names the change (a webhook delivery or an event of the source's events API).</summary>
public sealed record ObjectChange(string ObjectId, string EventId, long Created, JsonObject Object, bool Deleted);

/// <summary>One page of changes, newest first.</summary>
public sealed record ChangePage(IReadOnlyList<ObjectChange> Changes, bool HasMore, string? LastEventId);

/// <summary>One table of an object source, read page by page. Each call is one request; a source's rate limit slows
/// them down rather than failing them (<see cref="SourceReadException"/> only when waiting is no longer sensible).</summary>
public interface IObjectRead
{
    /// <summary>Whether the table has an account-wide list (a webhook-only table has none).</summary>
    bool Listable { get; }

    /// <summary>Whether the source keeps a log of this table's updates and deletions (<see cref="ChangesAsync"/>).</summary>
    bool HasChangeLog { get; }

    /// <summary>How far back the change log reaches: a watermark older than this cannot be caught up from it.</summary>
    TimeSpan ChangeLogWindow { get; }

    Task<ObjectPage> ListAsync(ObjectQuery query, CancellationToken ct);

    /// <summary>The table's changes created at or after <paramref name="since"/> (Unix seconds), newest first.</summary>
    Task<ChangePage> ChangesAsync(long since, string? startingAfter, int limit, CancellationToken ct);

    /// <summary>The source's clock now (one cheap request): where a run that must not miss a change starts its next one.</summary>
    Task<DateTimeOffset> ServerTimeAsync(CancellationToken ct);

    /// <summary>The warehouse type (PostgreSQL's spelling) a top-level field lands in, given one non-null value of it.</summary>
    string WarehouseTypeOf(string field, JsonNode value);
}
