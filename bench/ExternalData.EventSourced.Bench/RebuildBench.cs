using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using JasperFx.Events;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events.Projections;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// A full rebuild of every projection from an event store of 1M events (100k with --quick): what an operator runs
/// in a migration. One real source's stream (created through the API, then updated 99 times) is copied in SQL into
/// 10,000 streams over 100 projects, each copy with a prefix of its own (the warehouse prefix is unique per project). The baseline, B1, is
/// PostgreSQL reading the same events as fast as it can (a sequential scan that deserialises nothing).
/// </summary>
internal static class RebuildBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        var copies = quick ? 1_000 : 10_000;
        // The rebuild is the only thing projecting: the service's own daemon would race it for the audit feed.
        // Beside the service's projections, one that does nothing with the events it is handed: its rebuild is the daemon's own
        // floor (fetching every event a page at a time and deserialising it), which no projection of all events goes under.
        await using var bench = await BenchHost.StartAsync(cluster, "bench_rebuild", new Dictionary<string, string> { ["ExternalData:Projections:Daemon"] = "Disabled" },
            services => services.ConfigureMarten(o => o.Projections.Add(new DaemonFloorProjection(), ProjectionLifecycle.Async, DaemonFloorProjection.Name)));
        var store = bench.Store;
        var http = bench.Http;
        var database = await BenchDatabases.CreateAsync(cluster, "bench_rebuild_src", 3, "id bigserial PRIMARY KEY, updated_at timestamptz, v text");
        var body = BenchHost.PostgresSource(cluster, database, "seed");
        using var created = await http.PostAsync("/api/projects/seed/external_data_sources/", Measure.Json(body));
        var seedId = JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        for (var n = 0; n < 99; n++)
        {
            using var patched = await http.PatchAsync($"/api/projects/seed/external_data_sources/{seedId}/", Measure.Json(new JsonObject { ["description"] = $"d{n}" }));
            patched.EnsureSuccessStatusCode();
        }

        await using var raw = new NpgsqlDataSourceBuilder(cluster.ConnectionString).Build();
        var perStream = await ScalarAsync<long>(raw, $"SELECT count(*) FROM bench_rebuild.mt_events WHERE stream_id = '{seedId}'");
        var seeding = Stopwatch.StartNew();
        var eventColumns = await ColumnsAsync(raw, "mt_events", ["seq_id", "id", "stream_id", "tenant_id", "data"]);
        var prefixKey = await ScalarAsync<string>(raw, $"SELECT CASE WHEN data ? 'prefix' THEN 'prefix' ELSE 'Prefix' END FROM bench_rebuild.mt_events WHERE stream_id = '{seedId}' AND version = 1");
        var prefixPath = "{" + prefixKey + "}";
        var streamColumns = await ColumnsAsync(raw, "mt_streams", ["id", "tenant_id"]);
        for (var from = 0; from < copies; from += 1_000)
        {
            await ExecuteAsync(raw, $"""
                CREATE TEMP TABLE IF NOT EXISTS clones (n int, id uuid);
                TRUNCATE clones;
                INSERT INTO clones SELECT g, gen_random_uuid() FROM generate_series({from}, {Math.Min(copies, from + 1_000) - 1}) g;
                INSERT INTO bench_rebuild.mt_streams (id, tenant_id, {string.Join(", ", streamColumns)})
                  SELECT c.id, 'r' || (c.n % 100), {string.Join(", ", streamColumns.Select(x => "s." + x))}
                  FROM bench_rebuild.mt_streams s, clones c WHERE s.id = '{seedId}';
                INSERT INTO bench_rebuild.mt_events (seq_id, id, stream_id, tenant_id, data, {string.Join(", ", eventColumns)})
                  SELECT nextval('bench_rebuild.mt_events_sequence'), gen_random_uuid(), c.id, 'r' || (c.n % 100),
                         CASE WHEN e.data ? '{prefixKey}' THEN jsonb_set(e.data, '{prefixPath}', to_jsonb('c' || c.n)) ELSE e.data END,
                         {string.Join(", ", eventColumns.Select(x => "e." + x))}
                  FROM clones c, bench_rebuild.mt_events e WHERE e.stream_id = '{seedId}' ORDER BY c.n, e.version;
                """);
        }

        await ExecuteAsync(raw, "VACUUM ANALYZE bench_rebuild.mt_events");
        await ExecuteAsync(raw, "VACUUM ANALYZE bench_rebuild.mt_streams");
        var total = await ScalarAsync<long>(raw, "SELECT count(*) FROM bench_rebuild.mt_events");
        var seeded = seeding.Elapsed;

        var scan = Stopwatch.StartNew();
        await ScalarAsync<long>(raw, "SELECT sum(length(data::text)) FROM bench_rebuild.mt_events");
        var scanRate = total / scan.Elapsed.TotalSeconds;

        Console.WriteLine($"Full rebuild of every projection from {total:N0} events ({copies:N0} streams of {perStream} events, seeded in {seeded.TotalSeconds:F0} s); " +
                          $"{Environment.ProcessorCount} cores, local PostgreSQL 15 (fsync off). Goal: >= 50,000 events/s.");
        Console.WriteLine();
        Console.WriteLine("| projection | time (s) | events/s | B1 scan events/s | rebuild / B1 |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        using var daemon = await store.BuildProjectionDaemonAsync();
        foreach (var name in ((DocumentStore)store).Options.Projections.AllProjectionNames().Select(n => n.Trim('\'')).Order(StringComparer.Ordinal))
        {
            var clock = Stopwatch.StartNew();
            await daemon.RebuildProjectionAsync(name, TimeSpan.FromMinutes(30), CancellationToken.None);
            var seconds = clock.Elapsed.TotalSeconds;
            var label = name == DaemonFloorProjection.Name ? $"{name} (does nothing: the daemon's floor)" : name;
            Console.WriteLine($"| {label} | {seconds:F1} | {total / seconds:N0} | {scanRate:N0} | {total / seconds / scanRate:F2}x |");
        }

        // The audit feed's own writes without the daemon: every event's index row in one INSERT … SELECT into a copy of the
        // feed's table (same indexes). With the floor above, what a rebuild of the feed costs at the least.
        await ExecuteAsync(raw, "DROP TABLE IF EXISTS bench_rebuild.feed_b1; CREATE TABLE bench_rebuild.feed_b1 (LIKE bench_rebuild.mt_audit_feed INCLUDING ALL)");
        var feedClock = Stopwatch.StartNew();
        await ExecuteAsync(raw, """
            INSERT INTO bench_rebuild.feed_b1 (seq_id, tenant_id, stream_id, type, actor_name, created_via, timestamp)
            SELECT seq_id, tenant_id, stream_id, type, headers ->> 'actor_name', headers ->> 'created_via', timestamp FROM bench_rebuild.mt_events
            """);
        var feedSeconds = feedClock.Elapsed.TotalSeconds;
        Console.WriteLine($"| B1 of the feed's writes alone: one INSERT … SELECT of every event's index row, same indexes | {feedSeconds:F1} | {total / feedSeconds:N0} | {scanRate:N0} | {total / feedSeconds / scanRate:F2}x |");

        var documents = await ScalarAsync<long>(raw, "SELECT count(*) FROM bench_rebuild.mt_doc_source");
        Console.WriteLine();
        Console.WriteLine($"After the rebuild: {documents:N0} source documents (expected {copies + 1:N0}).");
    }

    private static async Task<List<string>> ColumnsAsync(NpgsqlDataSource raw, string table, string[] except)
    {
        await using var command = raw.CreateCommand($"SELECT column_name FROM information_schema.columns WHERE table_schema = 'bench_rebuild' AND table_name = '{table}' ORDER BY ordinal_position");
        await using var reader = await command.ExecuteReaderAsync();
        var columns = new List<string>();
        while (await reader.ReadAsync())
            if (!except.Contains(reader.GetString(0))) columns.Add($"\"{reader.GetString(0)}\"");
        return columns;
    }

    private static async Task ExecuteAsync(NpgsqlDataSource raw, string sql)
    {
        await using var connection = await raw.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 1200 };
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlDataSource raw, string sql)
    {
        await using var command = raw.CreateCommand(sql);
        command.CommandTimeout = 1200;
        return (T)(await command.ExecuteScalarAsync())!;
    }
}

/// <summary>A projection of every event that writes nothing: what a rebuild costs before any projection's own work.</summary>
internal sealed class DaemonFloorProjection : IProjection
{
    public const string Name = "DaemonFloor";

    public Task ApplyAsync(IDocumentOperations operations, IReadOnlyList<IEvent> events, CancellationToken cancellation) => Task.CompletedTask;
}
