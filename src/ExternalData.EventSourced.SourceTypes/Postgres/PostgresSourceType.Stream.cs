using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using ExternalData.EventSourced.SourceTypes.Sync;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;
using NpgsqlTypes;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>Streaming a slot's changes over logical replication (pgoutput, protocol 1: a transaction arrives after it
/// commits, whole and in commit order), and exporting snapshots that line up with the stream (ADR 0047).</summary>
public sealed partial class PostgresSourceType : IChangeStreamReader
{
    public async Task<ISourceSnapshot> ExportSnapshotAsync(JsonObject config, CancellationToken ct)
    {
        var connection = await OpenReplicationAsync(config, ct);
        try
        {
            // A temporary slot exists only to export a snapshot and name its consistent point; it goes with the connection.
            var slot = await Streamed(() => connection.CreatePgOutputReplicationSlot(
                $"externaldata_snapshot_{Guid.NewGuid():N}"[..40], temporarySlot: true, slotSnapshotInitMode: LogicalSlotSnapshotInitMode.Export, cancellationToken: ct));
            return new ExportedSnapshot(connection, slot.SnapshotName!, (ulong)slot.ConsistentPoint);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public async Task<IChangeStream> StartStreamAsync(JsonObject config, string slot, string publication, ulong from, CancellationToken ct)
    {
        var connection = await OpenReplicationAsync(config, ct);
        return new PostgresChangeStream(connection, slot, publication, from);
    }

    private async Task<LogicalReplicationConnection> OpenReplicationAsync(JsonObject config, CancellationToken ct)
    {
        var (settings, problem) = await ResolveAsync(config, ct);
        if (settings is null) throw new SourceReadException(problem!.Message ?? "Could not connect to the source.", Retryable(problem.Code), problem.Code ?? "connection_failed");
        var connection = new LogicalReplicationConnection(settings.ConnectionString);
        try
        {
            await connection.Open(ct);
            return connection;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or System.Net.Sockets.SocketException)
        {
            await connection.DisposeAsync();
            var check = PostgresErrors.Classify(e, config);
            throw new SourceReadException(check.Message ?? "Could not connect to the source.", Retryable(check.Code), check.Code ?? "connection_failed");
        }
    }

    /// <summary>What a failure of the stream means: the slot or publication gone stays gone until someone acts; the slot
    /// held by another consumer, or a lost connection, passes.</summary>
    private static async Task<T> Streamed<T>(Func<Task<T>> operation)
    {
        try
        {
            return await operation();
        }
        catch (Exception e) when (StreamFailure(e) is { } failure)
        {
            throw failure;
        }
    }

    private static SourceReadException? StreamFailure(Exception e) => e switch
    {
        PostgresException { SqlState: PostgresErrorCodes.UndefinedObject } pg when pg.MessageText.Contains("publication", StringComparison.OrdinalIgnoreCase) =>
            new SourceReadException($"The CDC publication is gone upstream ({pg.MessageText}). Disable and enable CDC again to recreate it, then resync the CDC tables.", false, "publication_missing"),
        PostgresException { SqlState: PostgresErrorCodes.UndefinedObject } pg =>
            new SourceReadException($"The CDC replication slot is gone upstream ({pg.MessageText}). Disable and enable CDC again to create a new slot; the tables are then loaded again from a snapshot.", false, "slot_missing"),
        PostgresException { SqlState: PostgresErrorCodes.ObjectNotInPrerequisiteState } pg when pg.MessageText.Contains("invalidated", StringComparison.OrdinalIgnoreCase) || pg.MessageText.Contains("lost", StringComparison.OrdinalIgnoreCase) =>
            new SourceReadException($"The CDC replication slot was invalidated upstream ({pg.MessageText}): the WAL it needed is gone. Disable and enable CDC again; the tables are then loaded again from a snapshot.", false, "slot_lost"),
        PostgresException { SqlState: PostgresErrorCodes.ObjectInUse } =>
            new SourceReadException("The CDC replication slot is in use by another connection; the consumer waits for it.", true, "slot_in_use"),
        _ => Unreadable(e),
    };

    private sealed class ExportedSnapshot(LogicalReplicationConnection connection, string name, ulong consistentPoint) : ISourceSnapshot
    {
        public string Name => name;
        public ulong ConsistentPoint => consistentPoint;
        public ValueTask DisposeAsync() => connection.DisposeAsync();
    }

    private sealed class PostgresChangeStream(LogicalReplicationConnection connection, string slot, string publication, ulong from) : IChangeStream
    {
        private readonly Dictionary<uint, (string Table, string[] Columns, string[] Key)> _relations = [];

        public ulong ServerPosition => (ulong)connection.LastReceivedLsn;

        public async IAsyncEnumerable<ChangeMessage> ReadAsync([EnumeratorCancellation] CancellationToken ct)
        {
            var messages = connection.StartReplication(
                new PgOutputReplicationSlot(slot), new PgOutputReplicationOptions(publication, PgOutputProtocolVersion.V1), ct,
                from == 0 ? null : new NpgsqlLogSequenceNumber(from));
            await using var enumerator = messages.GetAsyncEnumerator(ct);
            while (true)
            {
                PgOutputReplicationMessage message;
                try
                {
                    if (!await enumerator.MoveNextAsync()) yield break;
                    message = enumerator.Current;
                }
                catch (Exception e) when (e is not OperationCanceledException && StreamFailure(e) is { } failure)
                {
                    throw failure;
                }

                ChangeMessage? change;
                try
                {
                    change = await TranslateAsync(message, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException && StreamFailure(e) is { } failure)
                {
                    throw failure;
                }

                if (change is not null) yield return change;
            }
        }

        private async Task<ChangeMessage?> TranslateAsync(PgOutputReplicationMessage message, CancellationToken ct)
        {
            switch (message)
            {
                case BeginMessage begin:
                    return new ChangeBegin((ulong)begin.TransactionFinalLsn, Utc(begin.TransactionCommitTimestamp));
                case CommitMessage commit:
                    return new ChangeCommit((ulong)commit.CommitLsn, (ulong)commit.TransactionEndLsn, Utc(commit.TransactionCommitTimestamp));
                case RelationMessage relation:
                {
                    var columns = new string[relation.Columns.Count];
                    var key = new List<string>();
                    for (var i = 0; i < columns.Length; i++)
                    {
                        columns[i] = relation.Columns[i].ColumnName;
                        if ((relation.Columns[i].Flags & RelationMessage.Column.ColumnFlags.PartOfKey) != 0) key.Add(columns[i]);
                    }
                    var table = $"{relation.Namespace}.{relation.RelationName}";
                    _relations[relation.RelationId] = (table, columns, key.ToArray());
                    return new TableDescribed(table, columns);
                }
                case InsertMessage insert:
                    return await RowAsync(insert.Relation.RelationId, ChangeKind.Insert, insert.NewRow, null, ct);
                case FullUpdateMessage full:
                {
                    var old = await TupleAsync(full.OldRow, ct);
                    return await RowAsync(full.Relation.RelationId, ChangeKind.Update, full.NewRow, old.Values, ct);
                }
                case IndexUpdateMessage keyed:
                {
                    var old = await TupleAsync(keyed.Key, ct);
                    return await RowAsync(keyed.Relation.RelationId, ChangeKind.Update, keyed.NewRow, old.Values, ct);
                }
                case UpdateMessage update:
                    return await RowAsync(update.Relation.RelationId, ChangeKind.Update, update.NewRow, null, ct);
                case KeyDeleteMessage keyDelete:
                    return await RowAsync(keyDelete.Relation.RelationId, ChangeKind.Delete, keyDelete.Key, null, ct);
                case FullDeleteMessage fullDelete:
                    return await RowAsync(fullDelete.Relation.RelationId, ChangeKind.Delete, fullDelete.OldRow, null, ct);
                case TruncateMessage truncate:
                    return new TablesTruncated(truncate.Relations.Select(r => $"{r.Namespace}.{r.RelationName}").ToList());
                default:
                    return null;
            }
        }

        private async Task<RowChange> RowAsync(uint relationId, ChangeKind kind, ReplicationTuple tuple, string?[]? oldRow, CancellationToken ct)
        {
            var (table, columns, key) = _relations[relationId];
            var (values, unchanged) = await TupleAsync(tuple, ct);
            string?[]? oldKey = null;
            if (oldRow is not null)
            {
                // The old key travels only when the key changed (or the identity is FULL): a new key is a delete and an insert.
                var keyIndexes = key.Select(k => Array.IndexOf(columns, k)).ToArray();
                var changed = keyIndexes.Any(i => !string.Equals(oldRow[i], values[i], StringComparison.Ordinal));
                if (changed) oldKey = keyIndexes.Select(i => oldRow[i]).ToArray();
            }
            return new RowChange(table, kind, columns, key, values, unchanged, oldKey);
        }

        private static async Task<(string?[] Values, bool[] Unchanged)> TupleAsync(ReplicationTuple tuple, CancellationToken ct)
        {
            var values = new string?[tuple.NumColumns];
            var unchanged = new bool[tuple.NumColumns];
            var i = 0;
            await foreach (var value in tuple.WithCancellation(ct))
            {
                if (value.IsUnchangedToastedValue) unchanged[i] = true;
                // Read straight into a string: a text reader per value allocated buffers that made the decoding the slowest stage.
                else if (!value.IsDBNull) values[i] = await value.Get<string>(ct);
                i++;
            }
            return (values, unchanged);
        }

        public async Task AcknowledgeAsync(ulong lsn, CancellationToken ct)
        {
            connection.SetReplicationStatus(new NpgsqlLogSequenceNumber(lsn));
            await connection.SendStatusUpdate(ct);
        }

        public ValueTask DisposeAsync() => connection.DisposeAsync();

        private static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));
    }
}
