using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// The one-shot setup/ against a source database of 50 tables, end to end, and where its time goes: the part spent
/// reaching the customer's database (the live credential check and the discovery, which database_schema/ does alone)
/// against recording the source. B1 is the raw floor of the same work: a fresh Npgsql connection (SCRAM login, as
/// ours) running one catalogue query for the tables and their columns, then one transaction inserting an event row
/// and a JSON document for the source and for each table. B2 is B1 behind a minimal ASP.NET Core endpoint on the same
/// in-memory HTTP stack, reading the same JSON body.
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
        async Task<List<string>> DiscoverRawAsync()
        {
            var builder = new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = database, Pooling = false };
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("""
                SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
                """, connection);
            await using var reader = await command.ExecuteReaderAsync();
            var tables = new SortedSet<string>(StringComparer.Ordinal);
            while (await reader.ReadAsync()) tables.Add(reader.GetString(0));
            return [.. tables];
        }

        var raw = new NpgsqlDataSourceBuilder(cluster.ConnectionString).Build();
        await using (var create = raw.CreateCommand("""
            DROP SCHEMA IF EXISTS bench_raw_setup CASCADE; CREATE SCHEMA bench_raw_setup;
            CREATE TABLE bench_raw_setup.events (seq bigserial PRIMARY KEY, stream_id uuid NOT NULL, version int NOT NULL, data jsonb NOT NULL);
            CREATE TABLE bench_raw_setup.docs (id uuid PRIMARY KEY, data jsonb NOT NULL);
            """))
            await create.ExecuteNonQueryAsync();

        async Task RawSetupAsync(JsonObject config)
        {
            var tables = await DiscoverRawAsync();
            var sourceId = Guid.CreateVersion7();
            await using var connection = await raw.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            var batch = new NpgsqlBatch(connection, tx);
            void Row(Guid id, int version, string json)
            {
                var events = new NpgsqlBatchCommand("INSERT INTO bench_raw_setup.events (stream_id, version, data) VALUES ($1, $2, $3::jsonb)");
                events.Parameters.Add(new NpgsqlParameter { Value = sourceId });
                events.Parameters.Add(new NpgsqlParameter { Value = version });
                events.Parameters.Add(new NpgsqlParameter { Value = json });
                batch.BatchCommands.Add(events);
                var doc = new NpgsqlBatchCommand("INSERT INTO bench_raw_setup.docs (id, data) VALUES ($1, $2::jsonb)");
                doc.Parameters.Add(new NpgsqlParameter { Value = id });
                doc.Parameters.Add(new NpgsqlParameter { Value = json });
                batch.BatchCommands.Add(doc);
            }

            Row(sourceId, 1, new JsonObject { ["source_type"] = "Postgres", ["config"] = config.DeepClone() }.ToJsonString());
            for (var t = 0; t < tables.Count; t++) Row(Guid.CreateVersion7(), t + 2, new JsonObject { ["name"] = tables[t], ["should_sync"] = true }.ToJsonString());
            await batch.ExecuteNonQueryAsync();
            await tx.CommitAsync();
        }

        var minimal = WebApplication.CreateSlimBuilder();
        minimal.WebHost.UseTestServer();
        minimal.Logging.ClearProviders();
        await using var b2 = minimal.Build();
        b2.MapPost("/raw/setup", async (HttpRequest request) =>
        {
            var body = (await JsonNode.ParseAsync(request.Body))!.AsObject();
            await RawSetupAsync(body["payload"]!.AsObject());
            return Results.Json(new { ok = true }, statusCode: StatusCodes.Status201Created);
        });
        await b2.StartAsync();
        var b2Client = b2.GetTestClient();

        var b2Setup = await TimeAsync(runs, async _ =>
        {
            using var response = await b2Client.PostAsync("/raw/setup", Measure.Json(new JsonObject { ["source_type"] = "Postgres", ["payload"] = Config() }));
            response.EnsureSuccessStatusCode();
        });
        var b1Setup = await TimeAsync(runs, _ => RawSetupAsync(Config()));
        var floor = await TimeAsync(runs, async _ => await DiscoverRawAsync());

        double Median(List<double> values) => Measure.Median(values);
        Console.WriteLine($"setup/ against a source database of 50 tables (median of {runs}, sequential); {Environment.ProcessorCount} cores, local PostgreSQL 15 (fsync off)");
        Console.WriteLine();
        Console.WriteLine("| measure | median (ms) | share of setup | / its B1 | / B2 |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        Console.WriteLine($"| setup/ end to end (check, discovery, 50 schemas recorded, one transaction) | {Median(setup):F1} | 100% | {Median(setup) / Median(b1Setup):F1}x | {Median(setup) / Median(b2Setup):F1}x |");
        Console.WriteLine($"| credential check + discovery alone (database_schema/) | {Median(outside):F1} | {Median(outside) / Median(setup):P0} | {Median(outside) / Median(floor):F1}x | |");
        Console.WriteLine($"| recording (the difference) | {Median(setup) - Median(outside):F1} | {(Median(setup) - Median(outside)) / Median(setup):P0} | {(Median(setup) - Median(outside)) / Math.Max(0.01, Median(b1Setup) - Median(floor)):F1}x | |");
        Console.WriteLine($"| B2: minimal endpoint doing B1's setup over the same HTTP stack | {Median(b2Setup):F1} | {Median(b2Setup) / Median(setup):P0} | | 1.0x |");
        Console.WriteLine($"| B1: fresh connection + one catalogue query + 51 event rows and documents in one transaction | {Median(b1Setup):F1} | {Median(b1Setup) / Median(setup):P0} | 1.0x | |");
        Console.WriteLine($"| B1 of the outside part: fresh connection + one catalogue query | {Median(floor):F1} | {Median(floor) / Median(setup):P0} | 1.0x | |");
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
