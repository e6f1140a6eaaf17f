using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using ExternalData.EventSourced.SourceTypes.Sync;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>Reading a Postgres table into the warehouse (SYNC.md §2, §3.1): the source casts every column to its
/// warehouse type, and binary COPY carries the rows without decoding them on the way.</summary>
public sealed partial class PostgresSourceType : ITableReader
{
    public async Task<ITableRead> OpenAsync(JsonObject config, string table, IReadOnlyList<string>? enabledColumns, CancellationToken ct)
    {
        var (connection, problem) = await OpenAsync(config, ct);
        if (connection is null) throw new SourceReadException(problem!.Message ?? "Could not connect to the source.", Retryable(problem.Code), problem.Code ?? "connection_failed");
        try
        {
            var (schema, name) = Split(table, ConfigSchema.Lookup(config, "schema"));
            var shape = await PostgresTableShape.ReadAsync(connection, schema, name, table, enabledColumns, ct);
            return new PostgresTableRead(connection, Qualified(schema, name), shape);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    // A wrong password or a refused host stays wrong until someone acts; an unreachable server may come back.
    private static bool Retryable(string? code) => code is null or "connection_failed" or "timeout" or "connection_timeout";

    /// <summary>Discovery names a table <c>schema.table</c> when the source reads every schema, else by its bare name.</summary>
    private static (string Schema, string Name) Split(string table, string? configuredSchema) =>
        string.IsNullOrEmpty(configuredSchema) && table.IndexOf('.', StringComparison.Ordinal) is > 0 and var dot
            ? (table[..dot], table[(dot + 1)..])
            : (string.IsNullOrEmpty(configuredSchema) ? "public" : configuredSchema, table);

    internal static string Quote(string identifier) => $"\"{identifier.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";

    private static string Qualified(string schema, string name) => $"{Quote(schema)}.{Quote(name)}";

    private sealed class PostgresTableRead(NpgsqlConnection connection, string qualified, TableShape shape) : ITableRead
    {
        public TableShape Shape => shape;

        private WarehouseColumn Key => shape.Columns.First(c => c.Name == shape.PageColumn);

        public async Task<KeysetPage?> NextPageAsync(string? after, int size, CancellationToken ct)
        {
            var key = Quote(Key.Name);
            await using var command = new NpgsqlCommand(
                $"SELECT max(k)::text, count(*) FROM (SELECT {key} AS k FROM {qualified} {(after is null ? "" : $"WHERE {key} > @after::{Key.Type}")} ORDER BY {key} LIMIT @size) p",
                connection);
            if (after is not null) command.Parameters.AddWithValue("after", after);
            command.Parameters.AddWithValue("size", size);
            await using var reader = await Guard(() => command.ExecuteReaderAsync(ct));
            await reader.ReadAsync(ct);
            return await reader.IsDBNullAsync(0, ct) ? null : new KeysetPage(after, reader.GetString(0), reader.GetInt64(1));
        }

        public async Task CopyAsync(KeysetPage? page, Stream destination, CancellationToken ct)
        {
            var columns = string.Join(", ", shape.Columns.Select(c => c.ReadAs));
            var range = page is null ? "" : $" WHERE {(page.After is null ? "" : $"{Quote(Key.Name)} > {Literal(page.After, Key.Type)} AND ")}" +
                                            $"{Quote(Key.Name)} <= {Literal(page.LastKey, Key.Type)}";
            // COPY takes no parameters: the page's bounds are literals, dollar-quoted so no value can end them.
            await using var rows = await Guard(() => connection.BeginRawBinaryCopyAsync($"COPY (SELECT {columns} FROM {qualified}{range}) TO STDOUT (FORMAT BINARY)", ct));
            // Chunk by chunk, so a failure reading the source is told apart from one writing the destination.
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(81_920);
            try
            {
                while (await Guard(async () => await rows.ReadAsync(buffer, ct)) is > 0 and var read)
                    await destination.WriteAsync(buffer.AsMemory(0, read), ct);
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private static string Literal(string value, string type)
        {
            var tag = "$k" + Guid.NewGuid().ToString("N")[..8] + "$";
            return $"{tag}{value}{tag}::{type}";
        }

        public ValueTask DisposeAsync() => connection.DisposeAsync();
    }

    internal static async Task<T> Guard<T>(Func<Task<T>> read)
    {
        try
        {
            return await read();
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            throw new SourceReadException($"Permission denied reading the table: {e.MessageText}. Grant SELECT on it to the source's user.", false, "permission_denied");
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.UndefinedColumn)
        {
            throw new SourceReadException($"The table or one of its columns is gone upstream: {e.MessageText}. Refresh the source's schemas.", false, "table_missing");
        }
        catch (Exception e) when (e is NpgsqlException { IsTransient: true } or IOException or TimeoutException || e.InnerException is IOException or TimeoutException)
        {
            throw new SourceReadException("The connection to the source was lost while reading; the next run retries.", true, "connection_lost");
        }
    }
}
