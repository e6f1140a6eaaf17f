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
/// Retrieve and list (limit 100) as the store grows: 1k, 10k and 100k sources, spread over 100 projects (retrieve)
/// or all in one project (list). Against B1, the raw primary-key read of the JSON document, and B2, that read behind a
/// minimal ASP.NET Core endpoint on the same in-memory HTTP stack. The grown sources are copies of one real source's
/// read model made in SQL (creating 100k through the API would take hours); they carry no tables of their own.
/// </summary>
internal static class ReadsBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick, bool profile = false)
    {
        var sizes = quick ? new[] { 1_000, 10_000 } : [1_000, 10_000, 100_000];
        var runs = quick ? 200 : 1000;
        await using var bench = await BenchHost.StartAsync(cluster, "bench_reads");
        var host = bench.Host;
        var service = bench.Http;
        var database = await BenchDatabases.CreateAsync(cluster, "bench_reads_src", 2, "id bigserial PRIMARY KEY, updated_at timestamptz, v text");
        var body = BenchHost.PostgresSource(cluster, database, "seed");
        using var created = await service.PostAsync("/api/projects/0/external_data_sources/", Measure.Json(body));
        var seedId = JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();

        var raw = new NpgsqlDataSourceBuilder(cluster.ConnectionString).Build();
        async Task<string> RawReadAsync(string tenant, Guid id)
        {
            await using var command = raw.CreateCommand("SELECT data::text FROM bench_reads.mt_doc_source WHERE tenant_id = $1 AND id = $2");
            command.Parameters.Add(new NpgsqlParameter { Value = tenant });
            command.Parameters.Add(new NpgsqlParameter { Value = id });
            return (string)(await command.ExecuteScalarAsync())!;
        }

        // The list's raw work: the project's first 100 documents newest first, and its count (the same counter the service reads).
        async Task<string> RawListAsync(string tenant)
        {
            await using var batch = raw.CreateBatch();
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT coalesce((SELECT count FROM bench_reads.ed_source_counts WHERE tenant_id = $1), 0)") { Parameters = { new NpgsqlParameter { Value = tenant } } });
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT data::text FROM bench_reads.mt_doc_source WHERE tenant_id = $1 ORDER BY id DESC LIMIT 100") { Parameters = { new NpgsqlParameter { Value = tenant } } });
            await using var reader = await batch.ExecuteReaderAsync();
            await reader.ReadAsync();
            var json = new System.Text.StringBuilder($"{{\"count\":{reader.GetInt64(0)},\"results\":[");
            await reader.NextResultAsync();
            var first = true;
            while (await reader.ReadAsync())
            {
                if (!first) json.Append(',');
                json.Append(reader.GetString(0));
                first = false;
            }

            return json.Append("]}").ToString();
        }

        var minimal = WebApplication.CreateSlimBuilder();
        minimal.WebHost.UseTestServer();
        minimal.Logging.ClearProviders();
        await using var b2 = minimal.Build();
        b2.MapGet("/raw/{tenant}/{id:guid}", async (string tenant, Guid id) => Results.Text(await RawReadAsync(tenant, id), "application/json"));
        b2.MapGet("/raw/{tenant}", async (string tenant) => Results.Text(await RawListAsync(tenant), "application/json"));
        await b2.StartAsync();
        var b2Client = b2.GetTestClient();

        Console.WriteLine($"Retrieve and list as the store grows, {runs} sequential requests each; {Environment.ProcessorCount} cores, in-memory HTTP, local PostgreSQL 15 (fsync off)");
        Console.WriteLine("Grown sources are SQL copies of one real source's document (no tables of their own); retrieves spread over 100 projects, list in one project.");
        Console.WriteLine();
        Console.WriteLine("| sources | retrieve p50 / p99 (ms) | B2 p50 / p99 (ms) | B1 p50 (ms) | retrieve / B2 (p50) | list first page p50 / p99 (ms) | B2 list p50 (ms) | list / B2 (p50) | list page 50 (offset 4,900) p50 (ms) |");
        Console.WriteLine("|---:|---|---|---:|---:|---|---:|---:|---:|");
        // Tiered JIT promotes hot code after thousands of calls; without this the first size measured cold code.
        var warm = Stopwatch.StartNew();
        for (var n = 0; warm.Elapsed < TimeSpan.FromSeconds(quick ? 2 : 15); n++)
        {
            await GetAsync(service, $"/api/projects/0/external_data_sources/{seedId}/");
            await GetAsync(b2Client, $"/raw/0/{seedId}");
            if (n % 10 == 0) await GetAsync(service, "/api/projects/0/external_data_sources/?limit=100");
        }

        var have = 1;
        foreach (var size in sizes)
        {
            await GrowAsync(raw, seedId, have, size);
            have = size;
            var ids = await SampleIdsAsync(raw, 200);
            if (profile)
            {
                // Where a retrieve's time goes (--profile): the libraries' spans over 2,000 sequential retrieves, then B2's.
                using var spans = new SpanProfile();
                foreach (var (label, client, url) in new[] { ("the service", service, (Func<int, string>)(n => $"/api/projects/{ids[n % ids.Count].Tenant}/external_data_sources/{ids[n % ids.Count].Id}/")),
                             ("B2", b2Client, n => $"/raw/{ids[n % ids.Count].Tenant}/{ids[n % ids.Count].Id}") })
                {
                    for (var round = 0; round < 2; round++)
                    {
                        spans.Reset();
                        var clock = Stopwatch.StartNew();
                        for (var n = 0; n < 2000; n++) await GetAsync(client, url(n));
                        if (round == 1)
                        {
                            Console.WriteLine($"**{label}**, {size:N0} sources:");
                            spans.Print(2000, clock.Elapsed.TotalMilliseconds / 2000);
                            Console.WriteLine();
                        }
                    }
                }

                return;
            }

            var retrieve = await TimeAsync(runs, n => GetAsync(service, $"/api/projects/{ids[n % ids.Count].Tenant}/external_data_sources/{ids[n % ids.Count].Id}/"));
            var baseline = await TimeAsync(runs, n => GetAsync(b2Client, $"/raw/{ids[n % ids.Count].Tenant}/{ids[n % ids.Count].Id}"));
            var b1 = await TimeAsync(runs, n => RawReadAsync(ids[n % ids.Count].Tenant, ids[n % ids.Count].Id));
            var list = await TimeAsync(runs / 5, _ => GetAsync(service, "/api/projects/bulk/external_data_sources/?limit=100"));
            var listBaseline = await TimeAsync(runs / 5, _ => GetAsync(b2Client, "/raw/bulk"));
            var deep = await TimeAsync(runs / 10, _ => GetAsync(service, "/api/projects/bulk/external_data_sources/?limit=100&offset=4900"));
            Console.WriteLine($"| {size:N0} | {Measure.Percentile(retrieve, 50):F2} / {Measure.Percentile(retrieve, 99):F2} | {Measure.Percentile(baseline, 50):F2} / {Measure.Percentile(baseline, 99):F2} | " +
                              $"{Measure.Percentile(b1, 50):F2} | {Measure.Percentile(retrieve, 50) / Measure.Percentile(baseline, 50):F1}x | " +
                              $"{Measure.Percentile(list, 50):F1} / {Measure.Percentile(list, 99):F1} | {Measure.Percentile(listBaseline, 50):F1} | " +
                              $"{Measure.Percentile(list, 50) / Measure.Percentile(listBaseline, 50):F1}x | {Measure.Percentile(deep, 50):F1} |");
        }

        // Retrieve under concurrent clients (issue 23's goal: ≥ 0.5x B2 at 16), on the largest store, each client its own
        // run of the sampled sources.
        var sample = await SampleIdsAsync(raw, 200);
        var duration = TimeSpan.FromSeconds(quick ? 2 : 5);
        Console.WriteLine();
        Console.WriteLine($"Retrieve under concurrent clients, {have:N0} sources, {duration.TotalSeconds:F0} s per level");
        Console.WriteLine();
        Console.WriteLine("| clients | retrieve req/s | B2 req/s | retrieve / B2 | retrieve p50 / p99 (ms) | B2 p50 / p99 (ms) |");
        Console.WriteLine("|---:|---:|---:|---:|---|---|");
        string Url(int client, long n) => $"{sample[(int)((client * 37 + n) % sample.Count)].Tenant}/external_data_sources/{sample[(int)((client * 37 + n) % sample.Count)].Id}/";
        string RawUrl(int client, long n) => $"/raw/{sample[(int)((client * 37 + n) % sample.Count)].Tenant}/{sample[(int)((client * 37 + n) % sample.Count)].Id}";
        foreach (var clients in quick ? new[] { 1, 16 } : [1, 4, 16, 64])
        {
            var s = await PatchThroughputBench.LoadAsync(clients, duration, (c, n) => GetAsync(service, "/api/projects/" + Url(c, Math.Abs(n))));
            var h = await PatchThroughputBench.LoadAsync(clients, duration, (c, n) => GetAsync(b2Client, RawUrl(c, Math.Abs(n))));
            Console.WriteLine($"| {clients} | {s.Rate:F0} | {h.Rate:F0} | {s.Rate / h.Rate:F2}x | {s.P(50):F2} / {s.P(99):F2} | {h.P(50):F2} / {h.P(99):F2} |");
        }
    }

    /// <summary>Copies the seed source's document until the store holds <paramref name="to"/> sources: half in project
    /// "bulk" (the list's), the rest over projects p0..p99.</summary>
    private static async Task GrowAsync(NpgsqlDataSource raw, string seedId, int from, int to)
    {
        await using var command = raw.CreateCommand($$"""
            INSERT INTO bench_reads.mt_doc_source (tenant_id, id, data, mt_version, mt_dotnet_type, mt_last_modified, source_type, prefix, warehouse_prefix_key)
            SELECT CASE WHEN c.g % 2 = 0 THEN 'bulk' ELSE 'p' || (c.g % 100) END, c.id,
                   jsonb_set(jsonb_set(s.data, '{Id}', to_jsonb(c.id::text)), '{Prefix}', to_jsonb('s' || g)),
                   s.mt_version, s.mt_dotnet_type, now(), s.source_type, 's' || g, s.source_type || ':s' || g
            FROM bench_reads.mt_doc_source s, (SELECT n AS g, gen_random_uuid() AS id FROM generate_series({{from}}, {{to - 1}}) n) c
            WHERE s.id = '{{seedId}}'
            """);
        command.CommandTimeout = 600;
        await command.ExecuteNonQueryAsync();
        // What autovacuum does after a bulk load: statistics, and the visibility map that lets count(*) read the index only.
        await using var vacuum = raw.CreateCommand("VACUUM ANALYZE bench_reads.mt_doc_source");
        vacuum.CommandTimeout = 600;
        await vacuum.ExecuteNonQueryAsync();
    }

    private static async Task<List<(string Tenant, Guid Id)>> SampleIdsAsync(NpgsqlDataSource raw, int count)
    {
        await using var command = raw.CreateCommand($"SELECT tenant_id, id FROM bench_reads.mt_doc_source WHERE tenant_id LIKE 'p%' ORDER BY random() LIMIT {count}");
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new List<(string, Guid)>();
        while (await reader.ReadAsync()) ids.Add((reader.GetString(0), reader.GetGuid(1)));
        return ids;
    }

    private static async Task GetAsync(HttpClient http, string url)
    {
        using var response = await http.GetAsync(url);
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"GET {url}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        await response.Content.CopyToAsync(Stream.Null);
    }

    private static async Task<List<double>> TimeAsync(int runs, Func<int, Task> work)
    {
        for (var n = 0; n < 100; n++) await work(n);
        var times = new List<double>(runs);
        for (var n = 0; n < runs; n++)
        {
            var clock = Stopwatch.StartNew();
            await work(n);
            times.Add(clock.Elapsed.TotalMilliseconds);
        }

        return times;
    }
}
