using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Npgsql;
using NpgsqlTypes;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// One table's changes of a chunk of the stream, folded to the last state of each row (SYNC.md §3.6): an insert or update
/// takes the row's new values, except a TOASTed value the update did not touch, which keeps the value it had (from an
/// earlier change of the chunk, else the warehouse's); a delete keeps the row's last values and marks it deleted. A key that
/// changed is a delete of the old key and an insert of the new. Memory is bounded by the chunk, never the table.
/// </summary>
public sealed class TableChanges(string table, IReadOnlyList<string> columns, IReadOnlyList<string> key)
{
    private readonly int[] _keyIndexes = key.Select(k => IndexOf(columns, k)).ToArray();
    private readonly Dictionary<string, PendingRow> _rows = new(StringComparer.Ordinal);

    public string Table => table;
    public IReadOnlyList<string> Columns => columns;
    public IReadOnlyList<string> Key => key;
    public int Count => _rows.Count;
    public IEnumerable<PendingRow> Rows => _rows.Values;

    /// <summary>Whether any row of the chunk has a value it does not know (the warehouse's own then stays): only then does
    /// the apply statement pick, column by column, between the warehouse's value and the chunk's.</summary>
    public bool HasUnknown { get; private set; }

    /// <summary>Whether a change of this shape folds into this chunk (the same columns in the same order).</summary>
    public bool Fits(RowChange change) => ReferenceEquals(change.Columns, columns) || change.Columns.SequenceEqual(columns, StringComparer.Ordinal);

    /// <summary>Folds the change in. The change's arrays become the chunk's (the stream makes them for this change alone, and
    /// a copy per change was most of the fold's allocation). When <paramref name="versions"/> is given (a table with a
    /// history), the row versions it made (two when the key changed) are added to it, each as it stands after the fold (a
    /// copy): what a history table records, its remaining unknowns the warehouse's own.</summary>
    public void Add(RowChange change, DateTimeOffset at, List<PendingRow>? versions = null)
    {
        if (change.OldKey is { } oldKey)
        {
            var gone = new string?[columns.Count];
            var unknown = new bool[columns.Count];
            Array.Fill(unknown, true);
            for (var i = 0; i < _keyIndexes.Length; i++) (gone[_keyIndexes[i]], unknown[_keyIndexes[i]]) = (oldKey[i], false);
            Fold(new PendingRow(true, at, gone, unknown), versions);
        }

        var unchanged = change.Unchanged;
        if (change.Kind == ChangeKind.Delete && Array.IndexOf(unchanged, true) < 0 && IsKeyOnly(change))
        {
            // A delete under REPLICA IDENTITY DEFAULT names only the key: the other values are unknown here, and stay as they were.
            for (var i = 0; i < unchanged.Length; i++) unchanged[i] = Array.IndexOf(_keyIndexes, i) < 0;
        }

        Fold(new PendingRow(change.Kind == ChangeKind.Delete, at, change.Values, unchanged), versions);
    }

    /// <summary>Folds the change in; answers the row versions it made (see <see cref="Add(RowChange, DateTimeOffset, List{PendingRow})"/>).</summary>
    public IReadOnlyList<PendingRow> AddVersions(RowChange change, DateTimeOffset at)
    {
        var versions = new List<PendingRow>(1);
        Add(change, at, versions);
        return versions;
    }

    /// <summary>The key of a row version, as one string (for grouping a chunk's versions by row).</summary>
    public string KeyOf(PendingRow row)
    {
        if (_keyIndexes.Length == 1) return row.Values[_keyIndexes[0]] ?? "";
        var parts = new string?[_keyIndexes.Length];
        for (var i = 0; i < parts.Length; i++) parts[i] = row.Values[_keyIndexes[i]];
        return string.Join('\u0001', parts);
    }

    private bool IsKeyOnly(RowChange change)
    {
        for (var i = 0; i < change.Values.Length; i++)
            if (change.Values[i] is not null && Array.IndexOf(_keyIndexes, i) < 0) return false;
        return true;
    }

    private void Fold(PendingRow row, List<PendingRow>? versions)
    {
        var id = KeyOf(row);
        var unknown = false;
        if (_rows.TryGetValue(id, out var earlier))
        {
            for (var i = 0; i < row.Values.Length; i++)
            {
                if (row.Unknown[i] && !earlier.Unknown[i]) (row.Values[i], row.Unknown[i]) = (earlier.Values[i], false);
                unknown |= row.Unknown[i];
            }
        }
        else unknown = Array.IndexOf(row.Unknown, true) >= 0;

        HasUnknown |= unknown;
        _rows[id] = row;
        versions?.Add(row with { Values = (string?[])row.Values.Clone(), Unknown = (bool[])row.Unknown.Clone() });
    }

    private static int IndexOf(IReadOnlyList<string> columns, string name)
    {
        for (var i = 0; i < columns.Count; i++)
            if (columns[i] == name) return i;
        throw new InvalidOperationException($"The key column {name} is not among the table's columns.");
    }
}

/// <summary>A row's last state in a chunk: deleted or not, when it changed, its values, and which of them are unknown (kept).</summary>
public sealed record PendingRow(bool Deleted, DateTimeOffset At, string?[] Values, bool[] Unknown);

/// <summary>The warehouse side of CDC: the stream position committed with the rows, and one MERGE per table per chunk.</summary>
public static class WarehouseChanges
{
    private const string Positions = "_ph_cdc_positions";

    /// <summary>
    /// A warehouse transaction for applying changes. A chunk's rows are found by key: the planner, seeing thousands of
    /// changed rows, would rather hash the whole table on every chunk (a sequential scan of a table of millions to update
    /// five thousand rows, its cost growing with the table instead of the changes), so joins by hash or merge are off for
    /// this transaction and each row is one probe of the key index.
    /// </summary>
    public static async Task<NpgsqlTransaction> BeginAsync(NpgsqlConnection connection, CancellationToken ct)
    {
        var transaction = await connection.BeginTransactionAsync(ct);
        await using var command = new NpgsqlCommand("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off", connection, transaction);
        await command.ExecuteNonQueryAsync(ct);
        return transaction;
    }

    public static async Task EnsurePositionsAsync(NpgsqlConnection connection, string schema, CancellationToken ct)
    {
        try
        {
            await using var command = new NpgsqlCommand(
                $"CREATE TABLE IF NOT EXISTS {WarehouseTables.Qualified(schema, Positions)} (source_id uuid PRIMARY KEY, position text NOT NULL, applied_at timestamptz NOT NULL)", connection);
            await command.ExecuteNonQueryAsync(ct);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DuplicateTable)
        {
            // Another consumer of the project created it meanwhile.
        }
    }

    /// <summary>Where the source's applied changes end (0: none applied yet).</summary>
    public static async Task<ulong> PositionAsync(NpgsqlConnection connection, string schema, Guid sourceId, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"SELECT position FROM {WarehouseTables.Qualified(schema, Positions)} WHERE source_id = @id", connection);
        command.Parameters.AddWithValue("id", sourceId);
        return await command.ExecuteScalarAsync(ct) is string position ? Lsn.Parse(position) : 0;
    }

    /// <summary>Records the position in the transaction of the rows it covers: a crash after the commit resumes past them,
    /// one before it re-applies them, never twice.</summary>
    public static async Task SetPositionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, Guid sourceId, ulong position, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"""
            INSERT INTO {WarehouseTables.Qualified(schema, Positions)} (source_id, position, applied_at) VALUES (@id, @position, now())
            ON CONFLICT (source_id) DO UPDATE SET position = EXCLUDED.position, applied_at = EXCLUDED.applied_at
            """, connection, transaction);
        command.Parameters.AddWithValue("id", sourceId);
        command.Parameters.AddWithValue("position", Lsn.Format(position));
        await command.ExecuteNonQueryAsync(ct);
    }

    public static async Task ForgetAsync(NpgsqlConnection connection, string schema, Guid sourceId, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand($"DELETE FROM {WarehouseTables.Qualified(schema, Positions)} WHERE source_id = @id", connection);
        command.Parameters.AddWithValue("id", sourceId);
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The warehouse table's columns and their types, as PostgreSQL spells them.</summary>
    public static async Task<Dictionary<string, string>> ColumnTypesAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string schema, string table, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = to_regclass(@table) AND a.attnum > 0 AND NOT a.attisdropped
            """, connection, transaction);
        command.Parameters.AddWithValue("table", WarehouseTables.Qualified(schema, table));
        var types = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) types[reader.GetString(0)] = reader.GetString(1);
        return types;
    }

    public static async Task AddColumnsAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string table, IReadOnlyList<(string Name, string Type)> added, CancellationToken ct)
    {
        if (added.Count == 0) return;
        await using var command = new NpgsqlCommand(
            $"ALTER TABLE {WarehouseTables.Qualified(schema, table)} {string.Join(", ", added.Select(c => $"ADD COLUMN IF NOT EXISTS {WarehouseTables.Quote(c.Name)} {c.Type}"))}",
            connection, transaction);
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The history table of a CDC table (<c>cdc_table_mode</c> <c>cdc_only</c> or <c>both</c>): <c>&lt;name&gt;_cdc</c>,
    /// cut with a stable hash when longer than PostgreSQL's 63 bytes.</summary>
    public static string HistoryName(string table)
    {
        var name = table + "_cdc";
        if (System.Text.Encoding.UTF8.GetByteCount(name) <= 63) return name;
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(name)))[..8];
        var cut = table;
        while (System.Text.Encoding.UTF8.GetByteCount(cut) > 63 - hash.Length - 5) cut = cut[..^1];
        return $"{cut}_{hash}_cdc";
    }

    private const string HistoryMark = "externaldata:history-of-snapshot=";

    /// <summary>The columns of the table's unique key index (the key its changes are applied on).</summary>
    public static async Task<IReadOnlyList<string>> KeyAsync(NpgsqlConnection connection, string schema, string table, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = to_regclass(@table) AND i.indisunique
               AND i.indexrelid = (SELECT min(indexrelid) FROM pg_index WHERE indrelid = to_regclass(@table) AND indisunique)
             ORDER BY k.ord
            """, connection);
        command.Parameters.AddWithValue("table", WarehouseTables.Qualified(schema, table));
        var key = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) key.Add(reader.GetString(0));
        return key;
    }

    /// <summary>
    /// Makes the history table current with the table's snapshot: created with the table's columns and types plus
    /// <c>_ph_cdc_op</c>, <c>_ph_cdc_lsn</c>, <c>valid_from</c>, <c>valid_to</c> and <c>_ph_cdc_seq</c> (the order of versions, also
    /// within one transaction, whose versions share its commit time); when the table was (re)loaded from a snapshot
    /// the history has not seen, the open versions are closed and every live row of the table becomes a <c>snapshot</c>
    /// version, in one transaction, marked with the snapshot's point so it happens once.
    /// </summary>
    public static async Task EnsureHistoryAsync(
        NpgsqlConnection connection, string schema, string table, IReadOnlyList<string> key, IReadOnlyDictionary<string, string> types, string snapshotPoint, CancellationToken ct)
    {
        var q = WarehouseTables.Quote;
        var history = HistoryName(table);
        var columns = types.Where(t => !WarehouseColumnDrift.IsMetadata(t.Key)).Select(t => t.Key).ToList();
        await using var transaction = await connection.BeginTransactionAsync(ct);
        await using (var create = new NpgsqlCommand($"""
            CREATE TABLE IF NOT EXISTS {WarehouseTables.Qualified(schema, history)} (
                {string.Concat(columns.Select(c => $"{q(c)} {types[c]}, "))}_ph_cdc_op text NOT NULL, _ph_cdc_lsn text NOT NULL,
                valid_from timestamptz NOT NULL, valid_to timestamptz, _ph_cdc_seq bigint GENERATED ALWAYS AS IDENTITY,
                {WarehouseTables.MetadataSyncedAt} timestamptz NOT NULL DEFAULT now());
            CREATE INDEX IF NOT EXISTS {q($"ix_{history}"[..Math.Min(63, 3 + history.Length)])} ON {WarehouseTables.Qualified(schema, history)} ({string.Join(", ", key.Select(q))}) WHERE valid_to IS NULL;
            {string.Concat(columns.Select(c => $"ALTER TABLE {WarehouseTables.Qualified(schema, history)} ADD COLUMN IF NOT EXISTS {q(c)} {types[c]};"))}
            """, connection, transaction))
            await create.ExecuteNonQueryAsync(ct);
        await using (var mark = new NpgsqlCommand("SELECT obj_description(to_regclass(@table), 'pg_class')", connection, transaction))
        {
            mark.Parameters.AddWithValue("table", WarehouseTables.Qualified(schema, history));
            if (await mark.ExecuteScalarAsync(ct) as string == HistoryMark + snapshotPoint) return;
        }

        var list = string.Join(", ", columns.Select(q));
        await using (var seed = new NpgsqlCommand($"""
            UPDATE {WarehouseTables.Qualified(schema, history)} SET valid_to = now() WHERE valid_to IS NULL;
            INSERT INTO {WarehouseTables.Qualified(schema, history)} ({list}, _ph_cdc_op, _ph_cdc_lsn, valid_from)
                SELECT {list}, 'snapshot', @point, now() FROM {WarehouseTables.Qualified(schema, table)} WHERE NOT {WarehouseTables.MetadataDeleted};
            COMMENT ON TABLE {WarehouseTables.Qualified(schema, history)} IS '{HistoryMark}{snapshotPoint}';
            """, connection, transaction))
        {
            seed.Parameters.AddWithValue("point", snapshotPoint);
            await seed.ExecuteNonQueryAsync(ct);
        }

        await transaction.CommitAsync(ct);
    }

    /// <summary>One row version of a history table: the change's op, its transaction's commit position and time.</summary>
    public sealed record HistoryVersion(string Op, string Lsn, DateTimeOffset At, PendingRow Row, string Key);

    /// <summary>
    /// Appends a chunk's row versions to the history table, before the chunk is merged into the table: a value a change
    /// did not carry (an untouched TOASTed value, a key-only delete's other columns) is the table's current one. Each
    /// version is valid until the next version of its row; the row's version open before the chunk closes at the first.
    /// </summary>
    public static async Task AppendHistoryAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string table, TableChanges changes, IReadOnlyList<HistoryVersion> versions,
        IReadOnlyDictionary<string, string> types, CancellationToken ct)
    {
        if (versions.Count == 0) return;
        var q = WarehouseTables.Quote;
        var history = WarehouseTables.Qualified(schema, HistoryName(table));
        var written = changes.Columns.Select((name, index) => (Name: name, Index: index)).Where(c => types.ContainsKey(c.Name)).ToList();
        var next = new DateTime?[versions.Count];
        var seenAt = new Dictionary<string, DateTime>(StringComparer.Ordinal);
        for (var v = versions.Count - 1; v >= 0; v--)
        {
            if (seenAt.TryGetValue(versions[v].Key, out var later)) next[v] = later;
            seenAt[versions[v].Key] = versions[v].At.UtcDateTime;
        }

        var values = written.Select(_ => new string?[versions.Count]).ToArray();
        var masks = new string[versions.Count];
        for (var v = 0; v < versions.Count; v++)
        {
            var row = versions[v].Row;
            masks[v] = new string(written.Select(c => row.Unknown[c.Index] ? '1' : '0').ToArray());
            for (var c = 0; c < written.Count; c++) values[c][v] = row.Unknown[written[c].Index] ? null : row.Values[written[c].Index];
        }

        var casts = string.Concat(written.Select((c, i) => $", u.c{i}::{types[c.Name]} AS {q(c.Name)}"));
        var arrays = string.Concat(written.Select((_, i) => $", @c{i}::text[]"));
        var aliases = string.Concat(written.Select((_, i) => $", c{i}"));
        var keys = string.Join(", ", changes.Key.Select(k => $"s.{q(k)}"));
        var match = string.Join(" AND ", changes.Key.Select(k => $"h.{q(k)} = f.{q(k)}"));
        var joined = string.Join(" AND ", changes.Key.Select(k => $"t.{q(k)} = s.{q(k)}"));
        var picks = string.Join(", ", written.Select((c, i) => $"CASE WHEN substr(s._mask, {i + 1}, 1) = '1' THEN t.{q(c.Name)} ELSE s.{q(c.Name)} END"));
        var sql = $"""
            WITH s AS (SELECT u._seq, u._op, u._lsn, u._from, u._to, u._mask{casts}
                         FROM unnest(@seq::int[], @op::text[], @lsn::text[], @from::timestamptz[], @to::timestamptz[], @mask::text[]{arrays})
                              AS u(_seq, _op, _lsn, _from, _to, _mask{aliases})),
                 closed AS (UPDATE {history} h SET valid_to = f._from
                              FROM (SELECT DISTINCT ON ({keys}) {keys}, s._from FROM s ORDER BY {keys}, s._seq) f
                             WHERE {match} AND h.valid_to IS NULL)
            INSERT INTO {history} ({string.Concat(written.Select(c => q(c.Name) + ", "))}_ph_cdc_op, _ph_cdc_lsn, valid_from, valid_to)
            SELECT {picks}{(written.Count > 0 ? ", " : "")}s._op, s._lsn, s._from, s._to
              FROM s LEFT JOIN {WarehouseTables.Qualified(schema, table)} t ON {joined}
             ORDER BY s._seq
            """;
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter("seq", NpgsqlDbType.Array | NpgsqlDbType.Integer) { Value = Enumerable.Range(0, versions.Count).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("op", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = versions.Select(v => v.Op).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("lsn", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = versions.Select(v => v.Lsn).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("from", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = versions.Select(v => v.At.UtcDateTime).ToArray() });
        command.Parameters.Add(new NpgsqlParameter("to", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = next });
        command.Parameters.Add(new NpgsqlParameter("mask", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = masks });
        for (var c = 0; c < written.Count; c++)
            command.Parameters.Add(new NpgsqlParameter($"c{c}", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = values[c] });
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// Applies one table's folded changes in one statement: a known key takes the new values (an unknown one keeps its
    /// own), its delete mark set or cleared; a new key is inserted. Values travel as text arrays and are cast to the
    /// warehouse's types by the server, exactly as <c>value::text</c> round-trips them.
    /// </summary>
    public static async Task<long> ApplyAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, string table, TableChanges changes, IReadOnlyDictionary<string, string> types, CancellationToken ct)
    {
        if (changes.Count == 0) return 0;
        var written = changes.Columns.Select((name, index) => (Name: name, Index: index)).Where(c => types.ContainsKey(c.Name)).ToList();
        var rows = changes.Rows.ToList();
        var deleted = new bool[rows.Count];
        var at = new DateTime[rows.Count];
        // Most chunks know every value of every row: their statement then takes the chunk's values as they are, with no
        // per-column choice (a third of the statement's time in a chunk of plain updates).
        var masked = changes.HasUnknown;
        var masks = masked ? new string[rows.Count] : null;
        var values = written.Select(_ => new string?[rows.Count]).ToArray();
        for (var r = 0; r < rows.Count; r++)
        {
            var row = rows[r];
            (deleted[r], at[r]) = (row.Deleted, row.At.UtcDateTime);
            if (masks is not null)
                masks[r] = string.Create(written.Count, (row, written), static (span, state) =>
                {
                    for (var i = 0; i < span.Length; i++) span[i] = state.row.Unknown[state.written[i].Index] ? '1' : '0';
                });
            for (var c = 0; c < written.Count; c++) values[c][r] = row.Unknown[written[c].Index] ? null : row.Values[written[c].Index];
        }

        var q = WarehouseTables.Quote;
        var casts = written.Select((c, i) => $"u.c{i}::{types[c.Name]} AS {q(c.Name)}");
        var sources = string.Join(", ", written.Select((_, i) => $"@c{i}::text[]"));
        var aliases = string.Join(", ", written.Select((_, i) => $"c{i}"));
        var match = string.Join(" AND ", changes.Key.Select(k => $"t.{q(k)} = s.{q(k)}"));
        var sets = written.Select((c, i) => (c, i)).Where(x => !changes.Key.Contains(x.c.Name))
            .Select(x => masked
                ? $"{q(x.c.Name)} = CASE WHEN substr(s._mask, {x.i + 1}, 1) = '1' THEN t.{q(x.c.Name)} ELSE s.{q(x.c.Name)} END"
                : $"{q(x.c.Name)} = s.{q(x.c.Name)}")
            .Concat([$"{WarehouseTables.MetadataDeleted} = s._deleted", $"{WarehouseTables.MetadataDeletedAt} = CASE WHEN s._deleted THEN s._at END", $"{WarehouseTables.MetadataSyncedAt} = now()"]);
        var sql = $"""
            MERGE INTO {WarehouseTables.Qualified(schema, table)} AS t
            USING (SELECT u._deleted, u._at{(masked ? ", u._mask" : "")}{string.Concat(casts.Select(c => ", " + c))}
                     FROM unnest(@deleted::boolean[], @at::timestamptz[]{(masked ? ", @mask::text[]" : "")}{(sources.Length > 0 ? ", " + sources : "")})
                          AS u(_deleted, _at{(masked ? ", _mask" : "")}{(aliases.Length > 0 ? ", " + aliases : "")})) AS s
            ON {match}
            WHEN MATCHED THEN UPDATE SET {string.Join(", ", sets)}
            WHEN NOT MATCHED THEN INSERT ({string.Concat(written.Select(c => q(c.Name) + ", "))}{WarehouseTables.MetadataDeleted}, {WarehouseTables.MetadataDeletedAt}, {WarehouseTables.MetadataSyncedAt})
                VALUES ({string.Concat(written.Select(c => $"s.{q(c.Name)}, "))}s._deleted, CASE WHEN s._deleted THEN s._at END, now())
            """;
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter("deleted", NpgsqlDbType.Array | NpgsqlDbType.Boolean) { Value = deleted });
        command.Parameters.Add(new NpgsqlParameter("at", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = at });
        if (masks is not null) command.Parameters.Add(new NpgsqlParameter("mask", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = masks });
        for (var c = 0; c < written.Count; c++)
            command.Parameters.Add(new NpgsqlParameter($"c{c}", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = values[c] });
        return await command.ExecuteNonQueryAsync(ct);
    }
}
