using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// A full refresh of one table of a dozen typed columns (text and jsonb among them), end to end through the service:
/// from the job's start (the reload's commit) to its end (the swap's commit), as jobs/ reports them. The baseline (SYNC.md §7) is the raw pipe measured in the same
/// run on the same PostgreSQL: Npgsql's binary <c>COPY … TO STDOUT</c> of the same columns piped into
/// <c>COPY … FROM STDIN</c> of a table of the same types, bytes untouched. The service's managed heap is sampled during
/// the run: it must be bounded by the copy buffer, not by the table.
/// </summary>
internal static class SyncBench
{
    private const string Columns = """
        id bigint PRIMARY KEY, name text, email varchar(200), amount numeric(18,2), ratio double precision, qty integer, flag boolean,
        created_at timestamptz, updated_at timestamp, day date, ref uuid, payload jsonb
        """;

    private const string ColumnList = "id, name, email, amount, ratio, qty, flag, created_at, updated_at, day, ref, payload";

    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        int[] sizes = quick ? [100_000] : [1_000_000];
        await using var bench = await BenchHost.StartAsync(cluster, "bench_sync");
        Console.WriteLine("| rows | service full refresh (s) | service rows/s | raw COPY pipe (s) | raw rows/s | ratio (service / raw) | batches | peak managed heap during the run (MB) |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var rows in sizes)
        {
            var database = await CreateSourceAsync(cluster, rows);
            var raw = await RawPipeAsync(cluster, database);
            var (service, batches, heap) = await ServiceAsync(bench, cluster, database, rows);
            Console.WriteLine($"| {rows:N0} | {service.TotalSeconds:F2} | {rows / service.TotalSeconds:N0} | {raw.TotalSeconds:F2} | {rows / raw.TotalSeconds:N0} | " +
                              $"{raw.TotalSeconds / service.TotalSeconds:F2}x | {batches} | {heap / 1024d / 1024:F0} |");
        }

        Console.WriteLine();
        Console.WriteLine("(ratio: the service's throughput as a share of the raw pipe's; the service also records one event per batch of 50,000 rows, " +
                          "builds a staging table and swaps it in, and counts the rows it loaded.)");
    }

    private static async Task<string> CreateSourceAsync(LocalPostgresCluster cluster, int rows)
    {
        var name = $"bench_sync_src_{rows}";
        await using (var admin = new NpgsqlConnection(cluster.ConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        await using var db = new NpgsqlConnection(Database(cluster, name));
        await db.OpenAsync();
        await using var fill = new NpgsqlCommand($"""
            CREATE TABLE public.t1 ({Columns});
            INSERT INTO public.t1 SELECT g, 'customer ' || g, 'c' || g || '@example.com', g * 1.25, g / 7.0, g % 1000, g % 2 = 0,
                   '2024-01-01'::timestamptz + g * interval '1 second', '2024-01-01'::timestamp + g * interval '1 second', '2024-01-01'::date + (g % 3650),
                   md5(g::text)::uuid, jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b'), 'note', repeat('x', 20))
              FROM generate_series(1, {rows}) g;
            ANALYZE public.t1;
            """, db) { CommandTimeout = 1200 };
        await fill.ExecuteNonQueryAsync();
        return name;
    }

    private static string Database(LocalPostgresCluster cluster, string name) =>
        new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = name }.ConnectionString;

    private static async Task<TimeSpan> RawPipeAsync(LocalPostgresCluster cluster, string database)
    {
        await using var source = new NpgsqlConnection(Database(cluster, database));
        await using var target = new NpgsqlConnection(cluster.ConnectionString);
        await source.OpenAsync();
        await target.OpenAsync();
        await using (var create = new NpgsqlCommand($"DROP TABLE IF EXISTS public.bench_sync_raw; CREATE TABLE public.bench_sync_raw ({Columns.Replace(" PRIMARY KEY", "", StringComparison.Ordinal)})", target))
            await create.ExecuteNonQueryAsync();

        var clock = Stopwatch.StartNew();
        await using (var output = await source.BeginRawBinaryCopyAsync($"COPY (SELECT {ColumnList} FROM public.t1) TO STDOUT (FORMAT BINARY)"))
        await using (var input = await target.BeginRawBinaryCopyAsync($"COPY public.bench_sync_raw ({ColumnList}) FROM STDIN (FORMAT BINARY)"))
            await output.CopyToAsync(input);
        return clock.Elapsed;
    }

    private static async Task<(TimeSpan Elapsed, int Batches, long PeakHeap)> ServiceAsync(BenchHost bench, LocalPostgresCluster cluster, string database, int rows)
    {
        var created = await bench.Http.PostAsync("/api/projects/bench/external_data_sources/", Measure.Json(BenchHost.PostgresSource(cluster, database, $"s{rows}")));
        var id = JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        var url = $"/api/projects/bench/external_data_sources/{id}/";
        GC.Collect();
        long peak = 0;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, GC.GetTotalMemory(false));
                await Task.Delay(20);
            }
        });

        (await bench.Http.PostAsync($"{url}reload/", Measure.Json([]))).EnsureSuccessStatusCode();
        JsonNode job;
        while (true)
        {
            // Polled gently: a client hammering jobs/ would take the cores the run needs. The run's own start and end
            // times are the measure.
            await Task.Delay(200);
            job = JsonNode.Parse(await bench.Http.GetStringAsync($"{url}jobs/"))!.AsArray()[0]!;
            if (job["status"]!.GetValue<string>() != "Running") break;
        }

        var elapsed = job["finished_at"]!.GetValue<DateTimeOffset>() - job["created_at"]!.GetValue<DateTimeOffset>();
        await sampling.CancelAsync();
        await sampler;
        if (job["status"]!.GetValue<string>() != "Completed" || job["rows_synced"]!.GetValue<long>() != rows)
            throw new InvalidOperationException($"the run did not complete with every row: {job.ToJsonString()}");
        return (elapsed, job["batches"]!.GetValue<int>(), peak);
    }
}
