using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// Two runs of one table of a dozen typed columns (text and jsonb among them), end to end through the service, timed by
/// the job's own start and end as jobs/ reports them, each against its raw baseline of SYNC.md §7 measured in the same
/// run on the same PostgreSQL:
/// - the table's first run, a full load, against the raw pipe: Npgsql's binary <c>COPY … TO STDOUT</c> of the same
///   columns piped into <c>COPY … FROM STDIN</c> of a table of the same types, bytes untouched;
/// - an incremental run after 10 % of the rows changed upstream, against the raw merge: the changed rows piped by
///   binary COPY into a temp table, then one <c>INSERT … ON CONFLICT DO UPDATE</c> into a keyed copy of the table.
/// The service's managed heap is sampled during both: it must be bounded by the page, not by the table.
/// </summary>
internal static class SyncBench
{
    internal const string Columns = """
        id bigint PRIMARY KEY, name text, email varchar(200), amount numeric(18,2), ratio double precision, qty integer, flag boolean,
        created_at timestamptz, updated_at timestamp, day date, ref uuid, payload jsonb
        """;

    private const string ColumnList = "id, name, email, amount, ratio, qty, flag, created_at, updated_at, day, ref, payload";

    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick, int[]? rowCounts = null)
    {
        int[] sizes = rowCounts is { Length: > 0 } ? rowCounts : quick ? [100_000] : [1_000_000];
        await using var bench = await BenchHost.StartAsync(cluster, "bench_sync");
        Console.WriteLine("| rows | run | service (s) | service rows/s | raw baseline | raw (s) | raw rows/s | ratio (service / raw) | batches | peak managed heap during the run (MB) |");
        Console.WriteLine("|---:|---|---:|---:|---|---:|---:|---:|---:|---:|");
        foreach (var rows in sizes)
        {
            var database = await CreateSourceAsync(cluster, rows);
            var raw = await RawPipeAsync(cluster, database);
            var ((whole, load), loadHeap) = await WithPeakHeapAsync(() => FirstRunAsync(bench, cluster, database, rows, incremental: false));
            Print(rows, "full load, a full_refresh schema's first run (started by the create's scheduling)", load, rows, "COPY pipe", raw, loadHeap);
            // The same alternation as the incremental's below: the host's speed swings within minutes, so the raw pipe and the
            // reload take turns, and the medians are compared. The first reload still runs the per-page code the JIT has not
            // finished with (a page's methods have run 21 times, under the runtime's 30 calls for optimised code): it is shown
            // apart, and the median is of the rounds after it, as a service that has been running runs.
            var reloadRounds = quick ? 1 : 4;
            var (pipes, reloads, reloadHeaps) = (new List<TimeSpan>(), new List<(TimeSpan Elapsed, int Batches)>(), new List<long>());
            for (var round = 0; round < reloadRounds; round++)
            {
                pipes.Add(round == 0 ? raw : await RawPipeAsync(cluster, database));
                var (again, againHeap) = await WithPeakHeapAsync(() => ReloadAsync(bench, whole, rows, nth: 2 + round));
                reloads.Add(again);
                reloadHeaps.Add(againHeap);
            }

            var reloadPairs = string.Join(", ", reloads.Zip(pipes, (run, pipe) => $"{pipe.TotalSeconds / run.Elapsed.TotalSeconds:F2}x"));
            if (reloadRounds > 1) Print(rows, "full load, the same schema's first run on request (reload/: starts at once)", reloads[0], rows, "COPY pipe", pipes[0], reloadHeaps[0]);
            var warm = reloadRounds > 1 ? 1 : 0;
            var reload = reloads.Skip(warm).OrderBy(r => r.Elapsed).ElementAt((reloadRounds - warm) / 2);
            Print(rows, reloadRounds > 1
                    ? $"full load on request, median of the {reloadRounds - warm} runs after, raw pipe and run alternating (each round from the first: {reloadPairs})"
                    : "full load, the same schema's run on request (reload/: starts at once)",
                reload, rows, "COPY pipe", pipes.Skip(warm).Order().ElementAt((reloadRounds - warm) / 2), reloadHeaps.Max());
            var ((id, full), heap) = await WithPeakHeapAsync(() => FirstRunAsync(bench, cluster, database, rows, incremental: true));
            Print(rows, "full load (an incremental schema's first run: also indexes its merge key)", full, rows, "COPY pipe", raw, heap);

            // The host's speed swings by a third within minutes: the raw merge and the run alternate, and the medians are compared.
            var changed = rows / 10;
            var rounds = quick ? 1 : 3;
            var (raws, runs, heaps) = (new List<TimeSpan>(), new List<(TimeSpan Elapsed, int Batches)>(), new List<long>());
            await LoadRawMergeTargetAsync(cluster, database);
            for (var round = 0; round < rounds; round++)
            {
                var since = await ChangeAsync(cluster, database, changed, round);
                raws.Add(await RawMergeAsync(cluster, database, since));
                using var profile = round == 0 && Environment.GetEnvironmentVariable("EDBENCH_SYNC_PROFILE") == "1" ? new SpanProfile() : null;
                var (incremental, incrementalHeap) = await WithPeakHeapAsync(() => ReloadAsync(bench, id, changed, nth: 2 + round));
                profile?.Print(1, incremental.Elapsed.TotalMilliseconds);
                runs.Add(incremental);
                heaps.Add(incrementalHeap);
            }

            var pairs = string.Join(", ", runs.Zip(raws, (run, raw) => $"{raw.TotalSeconds / run.Elapsed.TotalSeconds:F2}x"));
            Print(rows, $"incremental, {changed:N0} changed (10 %){(rounds > 1 ? $"; median of {rounds} rounds, raw and run alternating (each round: {pairs})" : "")}",
                runs.OrderBy(r => r.Elapsed).ElementAt(rounds / 2), changed, "COPY + one merge", raws.Order().ElementAt(rounds / 2), heaps.Max());
            await ResumeAsync(bench, cluster, database, whole, rows, load.Batches, reload, nth: 2 + reloadRounds);
        }

        await FixedCostAsync(bench, cluster);

        Console.WriteLine();
        Console.WriteLine("(ratio: the service's throughput as a share of the raw baseline's. The service also pages the read (50,000 rows a page), " +
                          "records one event per page (and the watermark, in the same transaction), and for the full load builds a staging table, " +
                          "swaps it in and indexes the merge key.)");
        Console.WriteLine();
        await StripeSyncBench.RunAsync(cluster, quick);
    }

    /// <summary>
    /// A crash at 50 % (SYNC.md §7): the full_refresh schema's table loaded again (a reload) with every source connection cut
    /// right after the middle batch committed — the run reconnects and goes on from its committed batches in a new snapshot
    /// (ADR 0051), as a node taking over a dead node's job does. Baseline: the reload before it, not cut; the rows it kept, dropped and read
    /// again are the job's own <c>sync_load_resumed</c> fact.
    /// </summary>
    private static async Task ResumeAsync(BenchHost bench, LocalPostgresCluster cluster, string database, string id, int rows, int batches, (TimeSpan Elapsed, int Batches) clean, int nth)
    {

        var settings = bench.Host.Services.GetRequiredService<ExternalData.EventSourced.Sources.SyncRunSettings>();
        var (delays, cut) = (settings.TransientRetryDelays, 0);
        settings.TransientRetryDelays = [TimeSpan.Zero];
        settings.AfterBatchCommitted = async (_, batch) =>
        {
            if (batch != batches / 2 || Interlocked.Exchange(ref cut, 1) == 1) return;
            await using var admin = new NpgsqlConnection(cluster.ConnectionString);
            await admin.OpenAsync();
            await using var kill = new NpgsqlCommand("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = @db", admin);
            kill.Parameters.AddWithValue("db", database);
            await kill.ExecuteScalarAsync();
        };
        try
        {
            (await bench.Http.PostAsync($"/api/projects/bench/external_data_sources/{id}/reload/", Measure.Json([]))).EnsureSuccessStatusCode();
            var resumed = await JobAsync(bench, id, nth, rows);
            await using var events = new NpgsqlConnection(cluster.ConnectionString);
            await events.OpenAsync();
            await using var fact = new NpgsqlCommand(
                "SELECT data->>'KeptRows', data->>'DroppedRows', data->>'ReadAgainRows' FROM bench_sync.mt_events WHERE type = 'sync_load_resumed' ORDER BY seq_id DESC LIMIT 1", events);
            await using var reader = await fact.ExecuteReaderAsync();
            var went = await reader.ReadAsync() ? $"went on: {long.Parse(reader.GetString(0)):N0} rows kept, {reader.GetString(1)} dropped, {reader.GetString(2)} read again" : "started over";
            Console.WriteLine($"| {rows:N0} | full load again (reload), source connections cut after batch {batches / 2} of {batches}; {went} | {resumed.Elapsed.TotalSeconds:F2} | " +
                              $"{rows / resumed.Elapsed.TotalSeconds:N0} | the same reload, not cut | {clean.Elapsed.TotalSeconds:F2} | {rows / clean.Elapsed.TotalSeconds:N0} | " +
                              $"{clean.Elapsed.TotalSeconds / resumed.Elapsed.TotalSeconds:F2}x | {resumed.Batches} | |");
        }
        finally
        {
            settings.AfterBatchCommitted = null;
            settings.TransientRetryDelays = delays;
        }
    }

    /// <summary>The engine's fixed cost (SYNC.md §7: a run of a 2-row table under 100 ms end to end): the first run of a
    /// 2-row table, then ten incremental runs with nothing changed, each timed by its job's start and end.</summary>
    private static async Task FixedCostAsync(BenchHost bench, LocalPostgresCluster cluster)
    {
        var database = await CreateSourceAsync(cluster, 2);
        var (id, first) = await FirstRunAsync(bench, cluster, database, 2);
        var runs = new List<double>();
        using var profile = Environment.GetEnvironmentVariable("EDBENCH_SYNC_PROFILE") == "1" ? new SpanProfile() : null;
        for (var n = 0; n < 10; n++)
        {
            (await bench.Http.PostAsync($"/api/projects/bench/external_data_sources/{id}/reload/", Measure.Json([]))).EnsureSuccessStatusCode();
            // Incremental reads from its watermark inclusively: the row at the watermark is read again, and nothing else.
            runs.Add((await JobAsync(bench, id, n + 2, 1)).Elapsed.TotalMilliseconds);
        }

        profile?.Print(runs.Count, runs.Average());
        runs.Sort();
        Console.WriteLine($"| 2 | first run (full load) of a 2-row table | {first.Elapsed.TotalMilliseconds / 1000:F3} | | | | | | {first.Batches} | |");
        Console.WriteLine($"| 2 | incremental run, nothing changed (the watermark row re-read; 10 runs: median {runs[4]:F0} ms, max {runs[^1]:F0} ms) | {runs[4] / 1000:F3} | | | | | | | |");
    }

    private static void Print(int rows, string run, (TimeSpan Elapsed, int Batches) service, int moved, string baseline, TimeSpan raw, long heap) =>
        Console.WriteLine($"| {rows:N0} | {run} | {service.Elapsed.TotalSeconds:F2} | {moved / service.Elapsed.TotalSeconds:N0} | {baseline} | {raw.TotalSeconds:F2} | " +
                          $"{moved / raw.TotalSeconds:N0} | {raw.TotalSeconds / service.Elapsed.TotalSeconds:F2}x | {service.Batches} | {heap / 1024d / 1024:F0} |");

    /// <summary>Runs <paramref name="work"/> while sampling the managed heap every 20 ms from a collected start; answers its peak.</summary>
    private static async Task<(T Result, long PeakHeap)> WithPeakHeapAsync<T>(Func<Task<T>> work)
    {
        GC.Collect();
        long peak = 0;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, GC.GetTotalMemory(false));
                await Task.Delay(20);
            }
        });
        var result = await work();
        await stop.CancelAsync();
        await sampler;
        return (result, peak);
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
            {CreateTable(rows)}
            -- A cursor column worth syncing on is indexed upstream (discovery reports is_indexed).
            CREATE INDEX ON public.t1 (updated_at);
            ANALYZE public.t1;
            """, db) { CommandTimeout = 1200 };
        await fill.ExecuteNonQueryAsync();
        return name;
    }

    /// <summary>The bench table <c>public.t1</c> of the twelve typed columns, with <paramref name="rows"/> rows.</summary>
    internal static string CreateTable(int rows) => $"""
        CREATE TABLE public.t1 ({Columns});
        INSERT INTO public.t1 SELECT g, 'customer ' || g, 'c' || g || '@example.com', g * 1.25, g / 7.0, g % 1000, g % 2 = 0,
               '2024-01-01'::timestamptz + g * interval '1 second', '2024-01-01'::timestamp + g * interval '1 second', '2024-01-01'::date + (g % 3650),
               md5(g::text)::uuid, jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b'), 'note', repeat('x', 20))
          FROM generate_series(1, {rows}) g;
        """;

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

    /// <summary>Creates a source with t1 incremental on updated_at (else full_refresh); its first run (a full load) starts by itself.</summary>
    private static async Task<(string Id, (TimeSpan Elapsed, int Batches) Run)> FirstRunAsync(
        BenchHost bench, LocalPostgresCluster cluster, string database, int rows, bool incremental = true)
    {
        var body = BenchHost.PostgresSource(cluster, database, $"{(incremental ? "s" : "f")}{rows}");
        body["payload"]!["schemas"] = new JsonArray(incremental
            ? new JsonObject
            {
                ["name"] = "t1", ["should_sync"] = true, ["sync_type"] = "incremental", ["incremental_field"] = "updated_at", ["incremental_field_type"] = "timestamp",
            }
            : new JsonObject { ["name"] = "t1", ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        var created = await bench.Http.PostAsync("/api/projects/bench/external_data_sources/", Measure.Json(body));
        var id = JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        return (id, await JobAsync(bench, id, 1, rows));
    }

    private static async Task<(TimeSpan Elapsed, int Batches)> ReloadAsync(BenchHost bench, string id, int changed, int nth = 2)
    {
        (await bench.Http.PostAsync($"/api/projects/bench/external_data_sources/{id}/reload/", Measure.Json([]))).EnsureSuccessStatusCode();
        return await JobAsync(bench, id, nth, changed);
    }

    /// <summary>The source's newest job (of table <paramref name="table"/>, when given) once it is the <paramref name="nth"/> and
    /// has ended; it must have moved <paramref name="rows"/> rows.</summary>
    internal static async Task<(TimeSpan Elapsed, int Batches)> JobAsync(BenchHost bench, string id, int nth, int rows, string? table = null)
    {
        List<JsonNode> jobs;
        while (true)
        {
            // Polled gently: a client hammering jobs/ would take the cores the run needs. The run's own start and end
            // times are the measure.
            await Task.Delay(200);
            jobs = JsonNode.Parse(await bench.Http.GetStringAsync($"/api/projects/bench/external_data_sources/{id}/jobs/"))!.AsArray()
                .Select(j => j!).Where(j => table is null || j["schema"]!["name"]!.GetValue<string>() == table).ToList();
            if (jobs.Count >= nth && jobs[0]["status"]!.GetValue<string>() != "Running") break;
        }

        var job = jobs[0];
        if (job["status"]!.GetValue<string>() != "Completed" || job["rows_synced"]!.GetValue<long>() != rows)
            throw new InvalidOperationException($"the run did not complete with {rows} rows: {job.ToJsonString()}");
        return (job["finished_at"]!.GetValue<DateTimeOffset>() - job["created_at"]!.GetValue<DateTimeOffset>(), job["batches"]!.GetValue<int>());
    }

    /// <summary>Changes every tenth row upstream (a new cursor value and a new amount); answers the cursor they now share or exceed.</summary>
    private static async Task<DateTime> ChangeAsync(LocalPostgresCluster cluster, string database, int changed, int round = 0)
    {
        await using var db = new NpgsqlConnection(Database(cluster, database));
        await db.OpenAsync();
        // Each round's cursor values lie past the last round's (a day apart; a round spans 1,000 s at 1 M rows).
        var since = new DateTime(2030, 1, 1, 0, 0, 0, DateTimeKind.Unspecified).AddDays(round);
        await using var update = new NpgsqlCommand(
            "UPDATE public.t1 SET amount = amount + 1, updated_at = @since + id * interval '1 millisecond' WHERE id % 10 = 0; ANALYZE public.t1", db) { CommandTimeout = 600 };
        update.Parameters.AddWithValue("since", since);
        if (await update.ExecuteNonQueryAsync() < changed) throw new InvalidOperationException($"fewer than {changed} rows changed");
        return since;
    }

    /// <summary>The raw merge's target: a keyed copy of the table, loaded untimed once, as the service's table was by its first
    /// run; every round merges into it, so it ages round by round as the service's does.</summary>
    private static async Task LoadRawMergeTargetAsync(LocalPostgresCluster cluster, string database)
    {
        await using var source = new NpgsqlConnection(Database(cluster, database));
        await using var target = new NpgsqlConnection(cluster.ConnectionString);
        await source.OpenAsync();
        await target.OpenAsync();
        await using (var create = new NpgsqlCommand($"DROP TABLE IF EXISTS public.bench_merge_raw; CREATE TABLE public.bench_merge_raw ({Columns})", target))
            await create.ExecuteNonQueryAsync();
        await using (var output = await source.BeginRawBinaryCopyAsync($"COPY (SELECT {ColumnList} FROM public.t1) TO STDOUT (FORMAT BINARY)"))
        await using (var input = await target.BeginRawBinaryCopyAsync($"COPY public.bench_merge_raw ({ColumnList}) FROM STDIN (FORMAT BINARY)"))
            await output.CopyToAsync(input);
    }

    /// <summary>The raw merge, timed: the changed rows piped into a temp table and merged in one statement.</summary>
    private static async Task<TimeSpan> RawMergeAsync(LocalPostgresCluster cluster, string database, DateTime since)
    {
        await using var source = new NpgsqlConnection(Database(cluster, database));
        await using var target = new NpgsqlConnection(cluster.ConnectionString);
        await source.OpenAsync();
        await target.OpenAsync();
        var clock = Stopwatch.StartNew();
        await using var transaction = await target.BeginTransactionAsync();
        await using (var temp = new NpgsqlCommand($"CREATE TEMP TABLE bench_changes ({Columns.Replace(" PRIMARY KEY", "", StringComparison.Ordinal)}) ON COMMIT DROP", target, transaction))
            await temp.ExecuteNonQueryAsync();
        var literal = since.ToString("yyyy-MM-dd HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture);
        await using (var output = await source.BeginRawBinaryCopyAsync($"COPY (SELECT {ColumnList} FROM public.t1 WHERE updated_at >= '{literal}') TO STDOUT (FORMAT BINARY)"))
        await using (var input = await target.BeginRawBinaryCopyAsync($"COPY bench_changes ({ColumnList}) FROM STDIN (FORMAT BINARY)"))
            await output.CopyToAsync(input);
        var updates = string.Join(", ", ColumnList.Split(", ").Skip(1).Select(c => $"{c} = EXCLUDED.{c}"));
        await using (var merge = new NpgsqlCommand($"INSERT INTO public.bench_merge_raw ({ColumnList}) SELECT {ColumnList} FROM bench_changes ON CONFLICT (id) DO UPDATE SET {updates}", target, transaction))
            await merge.ExecuteNonQueryAsync();
        await transaction.CommitAsync();
        return clock.Elapsed;
    }
}
