using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.SourceTypes.Sync;

/// <summary>A column as it lands in the warehouse: its name, its warehouse type (PostgreSQL's spelling), whether it may be
/// null, and the expression that reads it from the source in exactly that type.</summary>
public sealed record WarehouseColumn(string Name, string Type, bool Nullable, string ReadAs);

/// <summary>What a run will read: the table's columns in the warehouse's types, the column a whole-table read pages on (a
/// single-column primary key of an orderable type), if any, and the table's primary key (every column of it).</summary>
public sealed record TableShape(string Table, IReadOnlyList<WarehouseColumn> Columns, string? PageColumn, IReadOnlyList<string> PrimaryKey)
{
    public WarehouseColumn? Column(string name) => Columns.FirstOrDefault(c => c.Name == name);
}

/// <summary>One page of a keyset read: the rows after the previous page's last key up to and including <see cref="LastKey"/>
/// (every row sharing <see cref="LastKey"/>, so ties never straddle two pages). <see cref="Rows"/> is the probe's count.</summary>
public sealed record KeysetPage(string? After, string LastKey, long Rows);

/// <summary>Which rows of the table a run reads.</summary>
public abstract record RowSelection
{
    /// <summary>Every row (a full load), paged on the table's key when it has a pageable one.</summary>
    public static readonly RowSelection All = new AllRows();

    private sealed record AllRows : RowSelection;
}

/// <summary>Rows whose cursor is at or above (<see cref="Inclusive"/>) or strictly above <see cref="From"/>, minus
/// <see cref="LookbackSeconds"/> for date and time cursors; paged on the cursor itself.</summary>
public sealed record CursorRows(string Column, string From, bool Inclusive, int? LookbackSeconds) : RowSelection;

/// <summary>Rows written by a transaction at or after <see cref="Since"/> (a 64-bit transaction id: Postgres <c>xmin</c>),
/// paged on the table's key.</summary>
public sealed record ChangedRows(long Since) : RowSelection;

/// <summary>How a whole-table load goes on in a new read (another snapshot: a reconnect, or another node after a crash) from
/// the part an earlier read committed: pages continue after <see cref="After"/>; of the committed part, the rows
/// <see cref="Unchanged"/> selects are still exactly as loaded (only their keys need reading, to drop every other row of
/// that part: deleted or changed since), and the rows <see cref="Changed"/> selects were written since and are read again.
/// <see cref="Point"/> is the committed part's resume point in this read's snapshot.</summary>
public sealed record LoadResume(string After, string Point, RowSelection Unchanged, RowSelection Changed);

/// <summary>A filter the source applies to every read (ref §5.21's <c>row_filters</c>): <c>column operator value</c>.</summary>
public sealed record RowFilter(string Column, string Operator, JsonNode? Value);

/// <summary>What to read: the source's stored config (decrypted, in memory only), the table as discovery names it, the
/// columns to keep (null: all) and the filters to apply. <see cref="Snapshot"/>: read in that exported snapshot (a CDC
/// table's first load, lined up with its stream), not a fresh one.</summary>
public sealed record TableReadRequest(JsonObject Config, string Table, IReadOnlyList<string>? EnabledColumns, IReadOnlyList<RowFilter> RowFilters, string? Snapshot = null);

/// <summary>A source's refusal to be read, in words a data engineer can act on. <see cref="Retryable"/>: a later run may
/// well succeed (a connection lost, a timeout); otherwise nothing changes until someone acts.</summary>
public sealed class SourceReadException(string message, bool retryable, string errorClass) : Exception(message)
{
    public bool Retryable { get; } = retryable;
    public string ErrorClass { get; } = errorClass;
}

/// <summary>
/// A source type whose tables can be read row by row into the warehouse (Postgres). It yields rows in PostgreSQL's binary
/// COPY format, the warehouse's own wire format, typed and cast by the source so the bytes need no decoding on the way.
/// Knows nothing of Marten, Wolverine or the warehouse.
/// </summary>
public interface ITableReader
{
    /// <summary>Opens a read of one table: a connection to the source held for the whole run.</summary>
    Task<ITableRead> OpenAsync(TableReadRequest request, CancellationToken ct);
}

/// <summary>One read of a table, on one connection and in one snapshot of the source (a repeatable-read transaction held
/// for the read): every page and probe of a run sees the table as it was when the read began.</summary>
public interface ITableRead : IAsyncDisposable
{
    TableShape Shape { get; }

    /// <summary>The column <paramref name="selection"/> pages on: the cursor for <see cref="CursorRows"/>, else
    /// <see cref="TableShape.PageColumn"/>; null when it is read in one batch.</summary>
    string? PageColumnFor(RowSelection selection);

    /// <summary>The next page of <paramref name="selection"/> after <paramref name="after"/> (null: from its start), about
    /// <paramref name="size"/> rows; null when no row is left. Only when <see cref="PageColumnFor"/> names a column.</summary>
    Task<KeysetPage?> NextPageAsync(RowSelection selection, string? after, int size, CancellationToken ct);

    /// <summary>Copies the page's rows (or, with no page, every selected row) in binary COPY format into <paramref name="destination"/>;
    /// answers how many rows it copied.</summary>
    Task<long> CopyAsync(RowSelection selection, KeysetPage? page, Stream destination, CancellationToken ct);

    /// <summary>Whether pages of <paramref name="selection"/> stay valid on a new read (a reconnect after a transient failure):
    /// true for pages keyed on a column; false for pages of physical position, which only hold within one snapshot, so a
    /// reconnected load must start over.</summary>
    bool PagesOutliveTheRead(RowSelection selection);

    /// <summary>Where a whole-table load stands once <paramref name="page"/> is committed, written so that another read can go on
    /// from it (<see cref="ResumeAsync"/>); null when the pages are keyed on a column, whose last key is the position.</summary>
    string? ResumePointAfter(KeysetPage page);

    /// <summary>Goes on with a whole-table load from <paramref name="point"/> (a <see cref="ResumePointAfter"/>) in this read's
    /// snapshot; null when it cannot (the table was rewritten since — VACUUM FULL, CLUSTER, a column type change —, the
    /// columns or filters read changed, or the table has no primary key), and the load starts over.</summary>
    Task<LoadResume?> ResumeAsync(string point, CancellationToken ct);

    /// <summary>How many rows <paramref name="selection"/> selects (a count on the source's side: nothing crosses the wire).</summary>
    Task<long> CountAsync(RowSelection selection, CancellationToken ct);

    /// <summary>Copies the primary key columns of the rows <paramref name="selection"/> selects, in binary COPY format, into
    /// <paramref name="destination"/>; answers how many rows it copied.</summary>
    Task<long> CopyKeysAsync(RowSelection selection, Stream destination, CancellationToken ct);

    /// <summary>The source's oldest transaction still in progress, as a 64-bit id: every row written after a read that
    /// starts now carries an <c>xmin</c> at or above it. Taken before a run reads, it is the next xmin run's start.</summary>
    Task<long> SnapshotCeilingAsync(CancellationToken ct);

    /// <summary>The highest value of <paramref name="column"/> among the rows the filters keep, as text; null when none.</summary>
    Task<string?> MaxAsync(string column, CancellationToken ct);

    /// <summary>How many values of <paramref name="key"/> more than one of the rows the filters keep share: 0 when the key is
    /// unique. A merge on a key that is not would keep one row of each and silently drop the others.</summary>
    Task<long> DuplicateKeysAsync(IReadOnlyList<string> key, CancellationToken ct);
}
