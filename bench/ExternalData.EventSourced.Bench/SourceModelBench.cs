using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// The source model on narrow and wide sources: the same request on a source of 2 tables (the baseline) and on
/// sources of 2,000 and 5,000 tables, through the real service (in-process HTTP, real PostgreSQL). The ratio
/// wide / narrow is the figure: work that does not depend on the table count must not cost more on a wide source.
/// </summary>
internal static class SourceModelBench
{
    private static readonly string[] Sizes = ["narrow", "wide-2000", "wide-5000"];

    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        var runs = quick ? 5 : 25;
        var tableCounts = quick ? new[] { 2, 500, 1000 } : [2, 2000, 5000];
        var listSources = quick ? 10 : 100;
        var listTables = quick ? 200 : 2000;

        var admin = new NpgsqlConnectionStringBuilder(cluster.ConnectionString);
        await using var bench = await BenchHost.StartAsync(cluster, "bench");
        var host = bench.Host;
        var http = bench.Http;
        http.Timeout = TimeSpan.FromMinutes(10);

        Console.WriteLine($"Source model: narrow ({tableCounts[0]} tables) vs wide ({tableCounts[1]:N0} and {tableCounts[2]:N0} tables); median of {runs} after a warm-up; " +
                          $"{Environment.ProcessorCount} cores, in-process HTTP, local PostgreSQL 15 (fsync off)");
        Console.WriteLine();

        // Warm-up: the first request of each endpoint pays its one-off code generation (ADR 0001); keep it out of the figures.
        var warmUp = await CreateDatabaseAsync(cluster, "bench_warm_up", 2);
        var warmUpBody = BenchHost.PostgresSource(cluster, warmUp, "warm_up");
        warmUpBody.Remove("prefix");
        await SendAsync(http, HttpMethod.Post, "/api/projects/3/external_data_sources/", warmUpBody, 201);

        var sources = new List<(string Label, int Tables, string Url, JsonArray Schemas, JsonObject Config)>();
        var createMs = new List<double>();
        foreach (var (label, tables) in Sizes.Zip(tableCounts))
        {
            var database = await CreateDatabaseAsync(cluster, $"bench_src_{tables}", tables);
            var config = BenchHost.PostgresConfig(cluster, database);
            var clock = Stopwatch.StartNew();
            var created = await SendAsync(http, HttpMethod.Post, "/api/projects/1/external_data_sources/", BenchHost.PostgresSource(cluster, database, label.Replace('-', '_')), 201);
            createMs.Add(clock.Elapsed.TotalMilliseconds);
            sources.Add((label, tables, $"/api/projects/1/external_data_sources/{created["id"]}/", created["schemas"]!.AsArray(), config));
        }

        var rows = new List<(string Work, double[] Ms)>
        {
            ("create (discovery + every table recorded), one run", createMs.ToArray()),
        };
        var i = 0;
        // The write alone (Prefer: return=minimal), then PostHog's default answer, which streams every schema back (ADR 0008).
        rows.Add(("PATCH description, return=minimal", await EachAsync(sources, s => TimeAsync(runs, () =>
            SendAsync(http, HttpMethod.Patch, s.Url, new JsonObject { ["description"] = $"d{i++}" }, prefer: "return=minimal")))));
        rows.Add(("PATCH description, whole answer (default)", await EachAsync(sources, s => TimeAsync(runs, () =>
            SendAsync(http, HttpMethod.Patch, s.Url, new JsonObject { ["description"] = $"d{i++}" }, readBody: false)))));
        rows.Add(("PATCH direct_query_enabled", await EachAsync(sources, s => TimeAsync(runs, () => SendAsync(http, HttpMethod.Patch, s.Url, new JsonObject { ["direct_query_enabled"] = i++ % 2 == 0 }, prefer: "return=minimal")))));
        rows.Add(("PATCH job_inputs (live credential check)", await EachAsync(sources, s => TimeAsync(runs, () =>
            SendAsync(http, HttpMethod.Patch, s.Url, new JsonObject { ["job_inputs"] = new JsonObject { ["password"] = admin.Password, ["schema"] = "public" } }, prefer: "return=minimal")))));
        rows.Add(("bulk_update_schemas, 2 schemas", await EachAsync(sources, s => TimeAsync(runs, () => BulkAsync(http, s.Url, s.Schemas, 2, i++)))));
        rows.Add(("bulk_update_schemas, 10 schemas", await EachAsync(sources, s => TimeAsync(runs, () => BulkAsync(http, s.Url, s.Schemas, 10, i++)))));
        rows.Add(("retrieve (every schema, streamed)", await EachAsync(sources, s => TimeAsync(runs, () => GetAsync(http, s.Url)))));

        Console.WriteLine("| work | narrow (ms) | wide 1 (ms) | wide 2 (ms) | wide 1 / narrow | wide 2 / narrow |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (work, ms) in rows)
            Console.WriteLine($"| {work} | {ms[0]:F1} | {ms[1]:F1} | {ms[2]:F1} | {ms[1] / ms[0]:F2}x | {ms[2] / ms[0]:F2}x |");
        Console.WriteLine();
        Console.WriteLine("(bulk_update on the narrow source touches its 2 tables whatever the batch asks; the wide ones touch as many as asked.)");
        Console.WriteLine();

        foreach (var source in sources)
        {
            var (largest, type, count) = await LargestEventAsync(cluster, source.Url);
            Console.WriteLine($"largest event of the {source.Tables:N0}-table source after everything above: {largest:N0} bytes ({type}) of {count:N0} events (limit 65,536)");
        }

        // One fact that really is big: a single batch that changes 1,000 tables records all 1,000 changes.
        var widest = sources[^1];
        var thousand = await TimeAsync(quick ? 1 : 3, () => BulkAsync(http, widest.Url, widest.Schemas, 1000, i++));
        var (bulkEvent, _, _) = await LargestEventAsync(cluster, widest.Url);
        Console.WriteLine($"bulk_update_schemas of 1,000 schemas in one request on the {widest.Tables:N0}-table source: {thousand:F0} ms (goal < 1,000 ms); " +
                          $"its event is {bulkEvent:N0} bytes, the one event allowed over 64 KB: it names 1,000 changes");

        Console.WriteLine();
        await ListAsync(http, cluster, admin, listSources, listTables);
    }

    private static async Task ListAsync(HttpClient http, LocalPostgresCluster cluster, NpgsqlConnectionStringBuilder admin, int sourceCount, int tables)
    {
        var database = await CreateDatabaseAsync(cluster, $"bench_list_{tables}", tables);
        const string project = "/api/projects/2/external_data_sources/";
        var clock = Stopwatch.StartNew();
        for (var n = 0; n < sourceCount; n++)
        {
            await SendAsync(http, HttpMethod.Post, project, new JsonObject
            {
                ["source_type"] = "Postgres", ["prefix"] = $"list_{n}",
                ["payload"] = new JsonObject
                {
                    ["host"] = "127.0.0.1", ["port"] = cluster.Port, ["database"] = database, ["user"] = admin.Username, ["password"] = admin.Password,
                    ["schema"] = "public", ["schemas"] = new JsonArray(new JsonObject { ["name"] = "t1", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
                },
            }, 201, readBody: false);
        }

        var setup = clock.Elapsed;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        var idle = process.WorkingSet64;
        var peak = idle;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                process.Refresh();
                peak = Math.Max(peak, process.WorkingSet64);
                await Task.Delay(5);
            }
        });

        clock.Restart();
        using var response = await http.GetAsync($"{project}?limit=100", HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[81920];
        long bytes = 0;
        int read;
        while ((read = await body.ReadAsync(buffer)) > 0) bytes += read;
        var listMs = clock.Elapsed.TotalMilliseconds;
        await sampling.CancelAsync();
        await sampler;

        Console.WriteLine($"list of {sourceCount} sources x {tables:N0} tables (limit 100; {sourceCount * tables:N0} schemas; set up in {setup.TotalSeconds:F0} s):");
        Console.WriteLine($"  {listMs:F0} ms, response {bytes / 1024.0 / 1024.0:F1} MiB, working set {idle / 1024.0 / 1024.0:F0} MiB before, peak {peak / 1024.0 / 1024.0:F0} MiB " +
                          $"(+{(peak - idle) / 1024.0 / 1024.0:F0} MiB while streaming; the whole body is never held)");
    }

    /// <summary>The same measurement on each source, narrow first.</summary>
    private static async Task<double[]> EachAsync<TSource>(IEnumerable<TSource> sources, Func<TSource, Task<double>> measure)
    {
        var results = new List<double>();
        foreach (var source in sources) results.Add(await measure(source));
        return results.ToArray();
    }

    private static async Task<double> TimeAsync(int runs, Func<Task> work)
    {
        await work();
        var times = new List<double>();
        for (var run = 0; run < runs; run++)
        {
            var clock = Stopwatch.StartNew();
            await work();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }

        times.Sort();
        return times[times.Count / 2];
    }

    private static Task BulkAsync(HttpClient http, string url, JsonArray schemas, int count, int round) =>
        SendAsync(http, HttpMethod.Patch, $"{url}bulk_update_schemas/", new JsonObject
        {
            ["schemas"] = new JsonArray(schemas.Take(count).Select(s => (JsonNode)new JsonObject
            {
                ["id"] = s!["id"]!.GetValue<string>(), ["sync_frequency"] = round % 2 == 0 ? "12hour" : "24hour",
            }).ToArray()),
        });

    private static async Task GetAsync(HttpClient http, string url)
    {
        using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await using var body = await response.Content.ReadAsStreamAsync();
        await body.CopyToAsync(Stream.Null);
    }

    private static async Task<JsonObject> SendAsync(HttpClient http, HttpMethod method, string url, JsonObject body, int expected = 200, bool readBody = true, string? prefer = null)
    {
        using var request = new HttpRequestMessage(method, url) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        if (prefer is not null) request.Headers.Add("Prefer", prefer);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if ((int)response.StatusCode != expected)
            throw new InvalidOperationException($"{method} {url} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        if (!readBody)
        {
            await (await response.Content.ReadAsStreamAsync()).CopyToAsync(Stream.Null);
            return [];
        }

        return JsonNode.Parse(await response.Content.ReadAsStringAsync()) as JsonObject ?? [];
    }

    private static async Task<(long Bytes, string Type, long Count)> LargestEventAsync(LocalPostgresCluster cluster, string url)
    {
        var id = url.TrimEnd('/').Split('/')[^1];
        await using var connection = new NpgsqlConnection(cluster.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""
            SELECT octet_length(data::text), type, count(*) OVER () FROM bench.mt_events WHERE stream_id = @id::uuid
            ORDER BY octet_length(data::text) DESC LIMIT 1
            """, connection);
        command.Parameters.AddWithValue("id", id);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt32(0), reader.GetString(1), reader.GetInt64(2));
    }

    private static Task<string> CreateDatabaseAsync(LocalPostgresCluster cluster, string name, int tables) =>
        BenchDatabases.CreateAsync(cluster, name, tables, "id bigserial PRIMARY KEY, updated_at timestamptz, v text");
}
