using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Marten;
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
        await using var bench = await BenchHost.StartAsync(cluster, "bench_rebuild", new Dictionary<string, string> { ["ExternalData:Projections:Daemon"] = "Disabled" });
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
            Console.WriteLine($"| {name} | {seconds:F1} | {total / seconds:N0} | {scanRate:N0} | {total / seconds / scanRate:F2}x |");
        }

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
