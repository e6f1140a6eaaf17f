using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;
using NpgsqlTypes;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// CDC through the service (SYNC.md §3.6, §7), against a raw baseline measured in the same run on the same PostgreSQL:
/// - sustained apply: a backlog of N updates (transactions of 1,000) waits in the slot while the warehouse table is locked;
///   once it is released, the time until the service's committed position passes the backlog's end. A first round with the
///   process cold, then rounds with it warm, each from vacuumed tables; The baseline is a
///   raw decode-and-discard loop over the same WAL through a slot of its own: Npgsql's pgoutput stream, every value read
///   as a string and dropped, acknowledged at the end;
/// - lag: 1,000 changes/s (100 transactions of 10 updates a second) for 20 s; for each transaction, the time from its
///   commit (as the writer saw it return) to the first moment the warehouse's committed position (polled every 10 ms)
///   passes it. p50, p99 and max.
/// </summary>
internal static class CdcBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        // A million changes a round: what the consumer holds when the clock starts (blocked behind the locked table, its
        // channel and the socket's buffers full, a few tens of thousands decoded) is a small part of it.
        var rows = quick ? 20_000 : 100_000;
        var backlog = quick ? 100_000 : 1_000_000;
        var database = await CreateSourceAsync(cluster, rows);
        await using var bench = await BenchHost.StartAsync(cluster, "bench_cdc", new Dictionary<string, string>
        {
            ["ExternalData:Durability:CheckAssignmentPeriod"] = "00:00:01",
        });

        var body = BenchHost.PostgresSource(cluster, database, "cdc");
        body["payload"]!["cdc_enabled"] = true;
        body["payload"]!["schemas"] = new JsonArray(new JsonObject { ["name"] = "t1", ["should_sync"] = true, ["sync_type"] = "cdc" });
        var created = await bench.Http.PostAsync("/api/projects/bench/external_data_sources/", Measure.Json(body));
        var id = JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        var snapshot = await SnapshotAsync(bench, id);

        // The raw loop's slot starts where the backlog starts.
        await SourceAsync(cluster, database, "CREATE PUBLICATION bench_raw_pub FOR TABLE public.t1;");
        // The first round finds the process cold: the consumer's code (and Npgsql's) is still being tiered up by the JIT, a
        // seventh of the machine's CPU in that round's profile; a running service's is not. The steady figure is the median of
        // the rounds after it, each against the raw loop's decode of the same round's WAL.
        var rounds = new List<(TimeSpan Service, TimeSpan Raw, double SentBefore)>();
        for (var round = 0; round < (quick ? 2 : 4); round++)
        {
            // Each round starts from vacuumed tables, and no autovacuum lands inside one round's clock and not another's.
            await WarehouseAsync(cluster, "ALTER TABLE warehouse_bench.cdcpostgres_t1 SET (autovacuum_enabled = false)");
            await WarehouseAsync(cluster, "VACUUM warehouse_bench.cdcpostgres_t1");
            await SourceAsync(cluster, database, "ALTER TABLE public.t1 SET (autovacuum_enabled = false)");
            await SourceAsync(cluster, database, "VACUUM public.t1");
            // The raw loop reads the round's backlog only, from a slot made for the round: a slot used before would decode again
            // from its restart point (a round behind) — the service's stream, connected throughout, never goes back.
            await SourceAsync(cluster, database, "SELECT pg_drop_replication_slot('bench_raw') FROM pg_replication_slots WHERE slot_name = 'bench_raw'");
            await SourceAsync(cluster, database, "SELECT pg_create_logical_replication_slot('bench_raw', 'pgoutput')");
            var (applied, backlogEnd, sentBefore) = await ApplyBacklogAsync(cluster, database, backlog, rows);
            rounds.Add((applied, await RawDecodeAsync(cluster, database, backlogEnd), sentBefore));
        }

        var (cold, coldRaw, _) = rounds[0];
        var steady = rounds.Skip(1).OrderBy(r => r.Raw / r.Service).ToList();
        var (applyElapsed, raw, _) = steady[steady.Count / 2];
        var lag = await LagAsync(cluster, database, TimeSpan.FromSeconds(quick ? 8 : 20), rows);
        await SourceAsync(cluster, database, "SELECT pg_drop_replication_slot('bench_raw');");

        Console.WriteLine("| measure | service | raw decode-and-discard loop | ratio (service / raw) |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| snapshot of {rows:N0} rows (a `cdc_snapshot` job) | {snapshot.TotalSeconds:F2} s | | |");
        Console.WriteLine($"| sustained apply, backlog of {backlog:N0} updates, first round (process cold) | {backlog / cold.TotalSeconds:N0} changes/s ({cold.TotalSeconds:F2} s) | " +
                          $"{backlog / coldRaw.TotalSeconds:N0} changes/s ({coldRaw.TotalSeconds:F2} s) | {coldRaw.TotalSeconds / cold.TotalSeconds:F2}x |");
        Console.WriteLine($"| sustained apply, backlog of {backlog:N0} updates, {(steady.Count == 1 ? "the round after" : $"median of the {steady.Count} rounds after")} | " +
                          $"{backlog / applyElapsed.TotalSeconds:N0} changes/s ({applyElapsed.TotalSeconds:F2} s) | " +
                          $"{backlog / raw.TotalSeconds:N0} changes/s ({raw.TotalSeconds:F2} s) | **{raw.TotalSeconds / applyElapsed.TotalSeconds:F2}x** |");
        Console.WriteLine($"(each round, service / raw: {string.Join(", ", rounds.Select(r => $"{r.Raw / r.Service:F2}x ({r.Service.TotalSeconds:F2} s / {r.Raw.TotalSeconds:F2} s, {r.SentBefore:P0} sent before the clock)"))})");
        Console.WriteLine($"| source commit → warehouse commit at 1,000 changes/s ({lag.Count:N0} transactions) | p50 {Percentile(lag, 0.50):F0} ms, p99 {Percentile(lag, 0.99):F0} ms, max {lag.Max():F0} ms | | |");
        Console.WriteLine();
        Console.WriteLine("(The service folds each chunk per key and applies it with one MERGE per table, in warehouse transactions of whole source " +
                          "transactions with the position in the same commit, then acknowledges the slot. Its flush interval (Cdc:FlushInterval, 200 ms) " +
                          "bounds the lag from below when changes trickle.)");
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
    }

    private static string Database(LocalPostgresCluster cluster, string name) =>
        new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = name }.ConnectionString;

    /// <summary>The WAL position now, or how far the service's stream (the one walsender besides the raw loop's) has sent.</summary>
    private static async Task<ulong> SentLsnAsync(NpgsqlConnection connection, bool current)
    {
        await using var command = new NpgsqlCommand(current ? "SELECT pg_current_wal_lsn()"
            : "SELECT r.sent_lsn FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name <> 'bench_raw'", connection);
        return await command.ExecuteScalarAsync() is NpgsqlLogSequenceNumber lsn ? (ulong)lsn : 0;
    }

    private static async Task WarehouseAsync(LocalPostgresCluster cluster, string sql)
    {
        await using var connection = new NpgsqlConnection(cluster.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 600 };
        await command.ExecuteNonQueryAsync();
    }

    private static async Task SourceAsync(LocalPostgresCluster cluster, string database, string sql)
    {
        await using var db = new NpgsqlConnection(Database(cluster, database));
        await db.OpenAsync();
        await using var command = new NpgsqlCommand(sql, db) { CommandTimeout = 600 };
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<string> CreateSourceAsync(LocalPostgresCluster cluster, int rows)
    {
        const string name = "bench_cdc_src";
        await using (var admin = new NpgsqlConnection(cluster.ConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        await SourceAsync(cluster, name, SyncBench.CreateTable(rows) + "ANALYZE public.t1;");
        return name;
    }

    private static async Task<TimeSpan> SnapshotAsync(BenchHost bench, string id)
    {
        var deadline = DateTimeOffset.UtcNow.AddMinutes(5);
        while (DateTimeOffset.UtcNow < deadline)
        {
            await Task.Delay(200);
            var jobs = JsonNode.Parse(await bench.Http.GetStringAsync($"/api/projects/bench/external_data_sources/{id}/jobs/"))!.AsArray();
            if (jobs.FirstOrDefault(j => j!["mode"]?.GetValue<string>() == "cdc_snapshot" && j["status"]!.GetValue<string>() == "Completed") is { } job)
                return job["finished_at"]!.GetValue<DateTimeOffset>() - job["created_at"]!.GetValue<DateTimeOffset>();
        }

        throw new TimeoutException("the CDC snapshot did not complete");
    }

    private static async Task<ulong> PositionAsync(NpgsqlConnection warehouse)
    {
        await using var command = new NpgsqlCommand("SELECT position FROM warehouse_bench._ph_cdc_positions", warehouse);
        return await command.ExecuteScalarAsync() is string text ? (ulong)NpgsqlLogSequenceNumber.Parse(text) : 0;
    }

    /// <summary>Locks the warehouse table, writes the backlog, releases the lock: how long until the service's committed
    /// position passes the backlog's last commit.</summary>
    private static async Task<(TimeSpan Elapsed, ulong End, double SentBefore)> ApplyBacklogAsync(LocalPostgresCluster cluster, string database, int backlog, int rows)
    {
        await using var warehouse = new NpgsqlConnection(cluster.ConnectionString);
        await warehouse.OpenAsync();
        await using var holder = new NpgsqlConnection(cluster.ConnectionString);
        await holder.OpenAsync();
        var hold = await holder.BeginTransactionAsync();
        await using (var lockTable = new NpgsqlCommand("LOCK TABLE warehouse_bench.cdcpostgres_t1 IN ACCESS EXCLUSIVE MODE", holder, hold))
            await lockTable.ExecuteNonQueryAsync();

        await using var source = new NpgsqlConnection(Database(cluster, database));
        await source.OpenAsync();
        var start = await SentLsnAsync(warehouse, current: true);
        ulong end = 0;
        for (var from = 1; from <= backlog; from += 1000)
        {
            var first = (from - 1) % rows + 1;
            // The WAL position read inside the transaction, before its commit: the position passes it once this commit is applied.
            await using var update = new NpgsqlCommand(
                $"UPDATE public.t1 SET qty = qty + 1, amount = amount + 0.01, updated_at = clock_timestamp()::timestamp WHERE id BETWEEN {first} AND {first + 999}; SELECT pg_current_wal_lsn()", source);
            end = (ulong)(NpgsqlLogSequenceNumber)(await update.ExecuteScalarAsync())!;
        }

        // How much of the backlog the service's stream had already sent when the clock starts (it read on until its buffers
        // filled behind the locked table): that part of the decoding is off the service's clock, and not off the raw loop's.
        var sent = await SentLsnAsync(warehouse, current: false);
        var clock = Stopwatch.StartNew();
        await hold.RollbackAsync();
        while (await PositionAsync(warehouse) < end)
        {
            if (clock.Elapsed > TimeSpan.FromMinutes(10)) throw new TimeoutException("the backlog was not applied");
            await Task.Delay(10);
        }

        return (clock.Elapsed, end, Math.Clamp((double)(sent - start) / (end - start), 0, 1));
    }

    /// <summary>The raw baseline: the same WAL decoded by Npgsql's pgoutput stream, every value read as text and dropped.</summary>
    private static async Task<TimeSpan> RawDecodeAsync(LocalPostgresCluster cluster, string database, ulong end)
    {
        await using var connection = new LogicalReplicationConnection(Database(cluster, database));
        await connection.Open();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        var clock = Stopwatch.StartNew();
        long values = 0;
        await foreach (var message in connection.StartReplication(new PgOutputReplicationSlot("bench_raw"), new PgOutputReplicationOptions("bench_raw_pub", PgOutputProtocolVersion.V1), stop.Token))
        {
            ReplicationTuple? tuple = message switch { InsertMessage i => i.NewRow, UpdateMessage u => u.NewRow, _ => null };
            if (tuple is not null)
            {
                await foreach (var value in tuple)
                {
                    if (value.IsDBNull || value.IsUnchangedToastedValue) continue;
                    values += (await value.Get<string>()).Length;
                }
            }

            if (message is CommitMessage commit && (ulong)commit.CommitLsn >= end)
            {
                connection.SetReplicationStatus(commit.TransactionEndLsn);
                await connection.SendStatusUpdate();
                break;
            }
        }

        GC.KeepAlive(values);
        return clock.Elapsed;
    }

    /// <summary>1,000 changes a second for <paramref name="duration"/>: each transaction's commit to the warehouse's commit.</summary>
    private static async Task<List<double>> LagAsync(LocalPostgresCluster cluster, string database, TimeSpan duration, int rows)
    {
        await using var source = new NpgsqlConnection(Database(cluster, database));
        await source.OpenAsync();
        await using var warehouse = new NpgsqlConnection(cluster.ConnectionString);
        await warehouse.OpenAsync();
        var commits = new List<(ulong Lsn, long At)>();
        var applied = new List<(ulong Position, long At)>();
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var poller = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                applied.Add((await PositionAsync(warehouse), clock.ElapsedTicks));
                await Task.Delay(10);
            }
        });

        var transactions = (int)(duration.TotalSeconds * 100);
        for (var i = 0; i < transactions; i++)
        {
            var due = TimeSpan.FromMilliseconds(i * 10);
            if (clock.Elapsed < due) await Task.Delay(due - clock.Elapsed);
            var first = i * 10 % rows + 1;
            await using var command = new NpgsqlCommand(
                $"UPDATE public.t1 SET qty = qty + 1, updated_at = clock_timestamp()::timestamp WHERE id BETWEEN {first} AND {first + 9}; SELECT pg_current_wal_lsn()", source);
            var lsn = (NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync())!;
            commits.Add(((ulong)lsn, clock.ElapsedTicks));
        }

        await Task.Delay(TimeSpan.FromSeconds(5));
        await stop.CancelAsync();
        await poller;
        // Each transaction read the WAL position before its own commit (one implicit transaction): the warehouse's position
        // passes it exactly when that commit (or a later one) is applied.
        var lags = new List<double>();
        foreach (var (lsn, at) in commits)
        {
            var seen = applied.FirstOrDefault(a => a.Position >= lsn && a.At >= at);
            if (seen.At > 0) lags.Add((seen.At - at) * 1000.0 / Stopwatch.Frequency);
        }

        return lags;
    }
}
