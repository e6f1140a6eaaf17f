using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.SourceTypes.ChangeDataCapture;

/// <summary>
/// A source whose changes can be streamed from its slot (Postgres logical replication, pgoutput), and whose tables can be
/// read in a snapshot that lines up exactly with a point of that stream. Knows nothing of the warehouse or of events.
/// </summary>
public interface IChangeStreamReader
{
    /// <summary>Exports a snapshot of the source and the stream position it stands for: every transaction that commits at or
    /// after <see cref="ISourceSnapshot.ConsistentPoint"/> is not in it and comes on the stream; every earlier one is in it.
    /// The snapshot can be read (<c>TableReadRequest.Snapshot</c>) while the returned object lives.</summary>
    Task<ISourceSnapshot> ExportSnapshotAsync(JsonObject config, CancellationToken ct);

    /// <summary>Starts streaming the slot's changes of the publication, from the slot's confirmed position (or
    /// <paramref name="from"/> when later).</summary>
    Task<IChangeStream> StartStreamAsync(JsonObject config, string slot, string publication, ulong from, CancellationToken ct);
}

/// <summary>An exported snapshot, valid until disposed.</summary>
public interface ISourceSnapshot : IAsyncDisposable
{
    string Name { get; }
    ulong ConsistentPoint { get; }
}

/// <summary>One open stream of a slot's changes, in commit order, transaction by transaction.</summary>
public interface IChangeStream : IAsyncDisposable
{
    IAsyncEnumerable<ChangeMessage> ReadAsync(CancellationToken ct);

    /// <summary>The furthest position the server has sent (changes or keepalives): once everything received is applied,
    /// acknowledging it lets a slot whose tables are quiet move on while the rest of the server writes.</summary>
    ulong ServerPosition { get; }

    /// <summary>Tells the source every change up to <paramref name="lsn"/> is durable on our side: the slot may release
    /// the WAL before it.</summary>
    Task AcknowledgeAsync(ulong lsn, CancellationToken ct);
}

/// <summary>A message of the stream.</summary>
public abstract record ChangeMessage;

/// <summary>A transaction begins; it commits at <see cref="CommitLsn"/>.</summary>
public sealed record ChangeBegin(ulong CommitLsn, DateTimeOffset CommittedAt) : ChangeMessage;

/// <summary>A row changed in <see cref="Table"/> (<c>schema.table</c>). <see cref="Values"/> are text forms in the order of
/// <see cref="Columns"/> (null: SQL NULL); <see cref="Unchanged"/> marks a TOASTed value the update did not touch (its old
/// value stands). A delete carries the replica identity only (the key) unless the table's identity is FULL. An update
/// that changed the key carries the old key in <see cref="OldKey"/>.</summary>
public sealed record RowChange(
    string Table, ChangeKind Kind, IReadOnlyList<string> Columns, IReadOnlyList<string> KeyColumns, string?[] Values, bool[] Unchanged,
    string?[]? OldKey = null) : ChangeMessage;

public enum ChangeKind { Insert, Update, Delete }

/// <summary>The tables were truncated.</summary>
public sealed record TablesTruncated(IReadOnlyList<string> Tables) : ChangeMessage;

/// <summary>A table's shape as the stream now sends it (after an upstream <c>ALTER TABLE</c>, and before its first change).</summary>
public sealed record TableDescribed(string Table, IReadOnlyList<string> Columns) : ChangeMessage;

/// <summary>The transaction committed; <see cref="EndLsn"/> is where the next one starts.</summary>
public sealed record ChangeCommit(ulong CommitLsn, ulong EndLsn, DateTimeOffset CommittedAt) : ChangeMessage;

/// <summary>Positions as PostgreSQL writes them (<c>0/16B3748</c>).</summary>
public static class Lsn
{
    public static string Format(ulong lsn) => $"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}";

    public static ulong Parse(string text)
    {
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        return (Convert.ToUInt64(text[..slash], 16) << 32) | Convert.ToUInt64(text[(slash + 1)..], 16);
    }
}
