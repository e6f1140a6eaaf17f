using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.SourceTypes.Sync;

/// <summary>A column as it lands in the warehouse: its name, its warehouse type (PostgreSQL's spelling), whether it may be
/// null, and the expression that reads it from the source in exactly that type.</summary>
public sealed record WarehouseColumn(string Name, string Type, bool Nullable, string ReadAs);

/// <summary>What a run will read: the table's columns in the warehouse's types, and the column it pages on (a single-column
/// primary key of an orderable type), if any.</summary>
public sealed record TableShape(string Table, IReadOnlyList<WarehouseColumn> Columns, string? PageColumn);

/// <summary>One page of a keyset read: the rows after the previous page's last key up to and including <see cref="LastKey"/>.</summary>
public sealed record KeysetPage(string? After, string LastKey, long Rows);

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
    Task<ITableRead> OpenAsync(JsonObject config, string table, IReadOnlyList<string>? enabledColumns, CancellationToken ct);
}

public interface ITableRead : IAsyncDisposable
{
    TableShape Shape { get; }

    /// <summary>The next keyset page after <paramref name="after"/> (null: from the start), at most <paramref name="size"/>
    /// rows; null when no row is left. Only for a shape with a <see cref="TableShape.PageColumn"/>.</summary>
    Task<KeysetPage?> NextPageAsync(string? after, int size, CancellationToken ct);

    /// <summary>Copies the page's rows (or, with no page, the whole table) in binary COPY format into <paramref name="destination"/>.</summary>
    Task CopyAsync(KeysetPage? page, Stream destination, CancellationToken ct);
}
