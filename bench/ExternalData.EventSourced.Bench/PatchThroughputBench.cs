using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// PATCH of a source's description at 1, 4, 16 and 64 concurrent clients (one source per client), against two
/// baselines doing the same logical work on the same database: B1, raw Npgsql in this process (append an event row
/// and rewrite a JSON document in one transaction: the database's limit), and B2, a minimal ASP.NET Core endpoint
/// doing that raw work over the same in-memory HTTP stack (the stack's limit). The ratio service / B2 is the figure.
/// </summary>
internal static class PatchThroughputBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick, bool profile = false)
    {
        var levels = quick ? new[] { 1, 16 } : [1, 4, 16, 64];
        var duration = TimeSpan.FromSeconds(quick ? 2 : 5);

        await using var bench = await BenchHost.StartAsync(cluster, "bench_patch");
        var host = bench.Host;
        var service = bench.Http;
        var database = await BenchDatabases.CreateAsync(cluster, "bench_patch_src", 2, "id bigserial PRIMARY KEY, updated_at timestamptz, v text");
        var sourceUrls = new List<string>();
        for (var n = 0; n < levels.Max(); n++)
        {
            var body = BenchHost.PostgresSource(cluster, database, $"p{n}");
            using var created = await service.PostAsync("/api/projects/1/external_data_sources/", Measure.Json(body));
            var text = await created.Content.ReadAsStringAsync();
            if (!created.IsSuccessStatusCode) throw new InvalidOperationException(text);
            sourceUrls.Add($"/api/projects/1/external_data_sources/{JsonNode.Parse(text)!["id"]}/");
        }

        // The raw work both baselines do: one event row appended, one JSON document rewritten, in one transaction.
        var raw = new NpgsqlDataSourceBuilder(cluster.ConnectionString).Build();
        await using (var setup = raw.CreateCommand("""
            DROP SCHEMA IF EXISTS bench_raw CASCADE; CREATE SCHEMA bench_raw;
            CREATE TABLE bench_raw.events (seq bigserial PRIMARY KEY, stream_id int NOT NULL, data jsonb NOT NULL);
            CREATE TABLE bench_raw.docs (id int PRIMARY KEY, version int NOT NULL, data jsonb NOT NULL);
            INSERT INTO bench_raw.docs SELECT g, 1, '{"description": null, "prefix": "p"}' FROM generate_series(0, 63) g;
            """))
            await setup.ExecuteNonQueryAsync();

        async Task RawPatchAsync(int id, string description)
        {
            await using var connection = await raw.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await using var append = new NpgsqlCommand("INSERT INTO bench_raw.events (stream_id, data) VALUES ($1, jsonb_build_object('description', $2::text))", connection, tx);
            append.Parameters.Add(new NpgsqlParameter { Value = id });
            append.Parameters.Add(new NpgsqlParameter { Value = description });
            await append.ExecuteNonQueryAsync();
            await using var update = new NpgsqlCommand("UPDATE bench_raw.docs SET version = version + 1, data = jsonb_set(data, '{description}', to_jsonb($2::text)) WHERE id = $1", connection, tx);
            update.Parameters.Add(new NpgsqlParameter { Value = id });
            update.Parameters.Add(new NpgsqlParameter { Value = description });
            await update.ExecuteNonQueryAsync();
            await tx.CommitAsync();
        }

        var minimal = WebApplication.CreateSlimBuilder();
        minimal.WebHost.UseTestServer();
        minimal.Logging.ClearProviders();
        await using var b2 = minimal.Build();
        b2.MapPatch("/raw/{id:int}", async (int id, HttpRequest request) =>
        {
            var body = await JsonNode.ParseAsync(request.Body);
            await RawPatchAsync(id, body!["description"]!.GetValue<string>());
            return Results.Json(new { id, description = body["description"]!.GetValue<string>() });
        });
        await b2.StartAsync();
        var b2Client = b2.GetTestClient();

        if (profile)
        {
            using var spans = new SpanProfile();
            for (var round = 0; round < 2; round++)
            {
                spans.Reset();
                var clock = Stopwatch.StartNew();
                var requests = quick ? 400 : 2000;
                for (var n = 0; n < requests; n++) await SendAsync(service, sourceUrls[0], n);
                if (round == 1) spans.Print(requests, clock.Elapsed.TotalMilliseconds / requests);
            }
            Console.WriteLine();
            return;
        }

        Console.WriteLine($"PATCH description, one source per client, {duration.TotalSeconds:F0} s per level; {Environment.ProcessorCount} cores, in-memory HTTP, local PostgreSQL 15 (fsync off)");
        Console.WriteLine();
        Console.WriteLine("| clients | service req/s | B2 req/s | B1 tx/s | service / B2 | service p50 / p95 / p99 (ms) | B2 p50 / p95 / p99 (ms) | B1 p50 (ms) |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---|---|---:|");
        // Warm both stacks first: tiered JIT and the hosts' start-up agents otherwise land on the one-client level.
        await LoadAsync(4, TimeSpan.FromSeconds(quick ? 2 : 10), (c, n) => SendAsync(service, sourceUrls[c], n));
        await LoadAsync(4, TimeSpan.FromSeconds(quick ? 1 : 3), (c, n) => SendAsync(b2Client, $"/raw/{c}", n));
        foreach (var clients in levels)
        {
            var s = await LoadAsync(clients, duration, (c, n) => SendAsync(service, sourceUrls[c], n));
            var h = await LoadAsync(clients, duration, (c, n) => SendAsync(b2Client, $"/raw/{c}", n));
            var r = await LoadAsync(clients, duration, (c, n) => RawPatchAsync(c, $"d{n}"));
            Console.WriteLine($"| {clients} | {s.Rate:F0} | {h.Rate:F0} | {r.Rate:F0} | {s.Rate / h.Rate:F2}x | {s.P(50):F1} / {s.P(95):F1} / {s.P(99):F1} | " +
                              $"{h.P(50):F1} / {h.P(95):F1} / {h.P(99):F1} | {r.P(50):F2} |");
        }
    }

    private static async Task SendAsync(HttpClient http, string url, long n)
    {
        using var response = await http.PatchAsync(url, Measure.Json(new JsonObject { ["description"] = $"d{n}" }));
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"PATCH {url}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        await response.Content.CopyToAsync(Stream.Null);
    }

    internal sealed record Load(double Rate, List<double> Ms)
    {
        public double P(int p) => Measure.Percentile(Ms, p);
    }

    /// <summary>Each client sends back to back for the duration, after a short warm-up.</summary>
    internal static async Task<Load> LoadAsync(int clients, TimeSpan duration, Func<int, long, Task> work)
    {
        for (var c = 0; c < clients; c++) await work(c, -c - 1);
        var times = new List<double>[clients];
        var clock = Stopwatch.StartNew();
        var counter = 0L;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            times[c] = [];
            while (clock.Elapsed < duration)
            {
                var one = Stopwatch.StartNew();
                await work(c, Interlocked.Increment(ref counter));
                times[c].Add(one.Elapsed.TotalMilliseconds);
            }
        })));
        var all = times.SelectMany(t => t).ToList();
        return new Load(all.Count / clock.Elapsed.TotalSeconds, all);
    }

}
