using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// The one-shot setup/ against a source database of 50 tables, end to end, and where its time goes: the part spent
/// reaching the customer's database (the live credential check and the discovery, which database_schema/ does alone)
/// against recording the source. B1 is the raw floor of the outside part: a fresh Npgsql connection (SCRAM login, as
/// ours) running one catalogue query for the tables and their columns.
/// </summary>
internal static class SetupBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        var runs = quick ? 5 : 20;
        await using var bench = await BenchHost.StartAsync(cluster, "bench_setup");
        var host = bench.Host;
        var http = bench.Http;
        var database = await BenchDatabases.CreateAsync(cluster, "bench_setup_src", 50, "id bigserial PRIMARY KEY, updated_at timestamptz, created_at timestamptz, v text");
        JsonObject Config() => BenchHost.PostgresConfig(cluster, database);

        // database_schema/ takes the config's fields beside source_type, as PostHog's does.
        JsonObject Flat()
        {
            var flat = Config();
            flat["source_type"] = "Postgres";
            return flat;
        }

        var setup = await TimeAsync(runs, async n =>
        {
            using var response = await http.PostAsync("/api/projects/1/external_data_sources/setup/",
                Measure.Json(new JsonObject { ["source_type"] = "Postgres", ["prefix"] = $"s{n + 1}_{Guid.NewGuid():N}"[..12], ["payload"] = Config() }));
            if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"setup: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        });
        var outside = await TimeAsync(runs, async _ =>
        {
            using var response = await http.PostAsync("/api/projects/1/external_data_sources/database_schema/", Measure.Json(Flat()));
            if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"database_schema: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        });
        var floor = await TimeAsync(runs, async _ =>
        {
            var builder = new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = database, Pooling = false };
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("""
                SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
                """, connection);
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync()) { }
        });

        double Median(List<double> values) => Measure.Median(values);
        Console.WriteLine($"setup/ against a source database of 50 tables (median of {runs}, sequential); {Environment.ProcessorCount} cores, local PostgreSQL 15 (fsync off)");
        Console.WriteLine();
        Console.WriteLine("| measure | median (ms) | share of setup | / B1 |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| setup/ end to end (check, discovery, 50 schemas recorded, one transaction) | {Median(setup):F1} | 100% | {Median(setup) / Median(floor):F1}x |");
        Console.WriteLine($"| credential check + discovery alone (database_schema/) | {Median(outside):F1} | {Median(outside) / Median(setup):P0} | {Median(outside) / Median(floor):F1}x |");
        Console.WriteLine($"| recording (the difference) | {Median(setup) - Median(outside):F1} | {(Median(setup) - Median(outside)) / Median(setup):P0} | |");
        Console.WriteLine($"| B1: fresh connection + one catalogue query | {Median(floor):F1} | {Median(floor) / Median(setup):P0} | 1.0x |");
    }

    private static async Task<List<double>> TimeAsync(int runs, Func<int, Task> work)
    {
        await work(-1);
        var times = new List<double>();
        for (var n = 0; n < runs; n++)
        {
            var clock = Stopwatch.StartNew();
            await work(n);
            times.Add(clock.Elapsed.TotalMilliseconds);
        }

        return times;
    }
}
