using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// A run interrupted from outside (issue 20): its node killed with kill -9 mid-run, with a second node on the same
/// database — the dead node's run is taken over by the survivor once the dead node's lease runs out, and ends exact, as
/// one job; the service's own PostgreSQL crashing mid-batch — after it is back, the warehouse is exact with no duplicate.
/// The source table reads slowly on purpose (a row-level security policy that sleeps a little per row), so a run of
/// 8,000 rows in pages of 1,000 lasts long enough to be interrupted in the middle.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_a_sync_is_interrupted(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Rows = 8_000;
    private ReliabilityEnvironment _env = null!;

    private static readonly Dictionary<string, string> SmallPages = new()
    {
        ["Sync__PageSize"] = "1000",
        ["Sync__TransientRetryDelays"] = "00:00:01, 00:00:02, 00:00:04, 00:00:08",
    };

    public async Task InitializeAsync()
    {
        _env = await ReliabilityEnvironment.StartAsync();
        await _env.CreateSlowTableAsync(Rows);
    }

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private JsonObject SlowSource(string prefix)
    {
        var body = _env.PostgresSource(prefix);
        body["payload"]!["schemas"] = new JsonArray(new JsonObject { ["name"] = "slow", ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        return body;
    }

    private static async Task<List<JsonNode>> JobsAsync(ReliabilityEnvironment.Client api, string id) =>
        (await api.GetAsync($"/api/projects/7001/external_data_sources/{id}/jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().Select(j => j!).ToList();

    private async Task<List<string>> RowsAsync(string connectionString, string table)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT id::text || '|' || label || '|' || amount::text FROM {table}", connection) { CommandTimeout = 120 };
        var rows = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0));
        rows.Sort(StringComparer.Ordinal);
        return rows;
    }

    private async Task WarehouseShouldEqualTheSourceAsync(string prefix)
    {
        var warehouse = await RowsAsync(_env.Database.ConnectionStringFor("postgres"), $"warehouse_7001.{prefix}postgres_slow");
        warehouse.Count.ShouldBe(Rows, "no row lost, none twice");
        warehouse.ShouldBe(await RowsAsync(_env.Database.ConnectionStringFor(_env.Source.Name), "public.slow"));
        (await _env.QueryAsync<long>("SELECT count(*) FROM pg_tables WHERE schemaname = 'warehouse_7001' AND tablename LIKE '\\_stage\\_%'"))
            .ShouldBe(0, "no staging table left behind");
    }

    [Fact]
    public async Task a_node_killed_mid_run_hands_the_run_to_the_survivor_which_ends_it_exactly_once()
    {
        var a = await _env.StartNodeAsync("node-a", SmallPages);
        var b = await _env.StartNodeAsync("node-b", SmallPages);
        var survivor = _env.ClientOf(b);
        // Created on node a: its first run is a message on node a's durable queue, so it runs there.
        var id = (await _env.ClientOf(a).PostAsync(_env.Sources, SlowSource("killed"))).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await EventuallyAsync(async () => await JobsAsync(survivor, id) is [{ } job] && job["rows_synced"]!.GetValue<long>() >= 2000, "the run committed two batches");

        var job = (await JobsAsync(survivor, id)).Single();
        job["status"]!.GetValue<string>().ShouldBe("Running");
        await a.KillAsync();
        var takeover = System.Diagnostics.Stopwatch.StartNew();
        output.WriteLine($"node-a killed at {job["rows_synced"]} rows of {Rows}");

        await EventuallyAsync(async () => (await JobsAsync(survivor, id)).All(j => j["status"]!.GetValue<string>() != "Running"),
            "the survivor finished the dead node's run", TimeSpan.FromSeconds(120));
        output.WriteLine($"the run ended on node-b {takeover.Elapsed.TotalSeconds:F1} s after the kill");
        var jobs = await JobsAsync(survivor, id);
        var done = jobs.ShouldHaveSingleItem("the same job, taken over, not a second run");
        done["id"]!.GetValue<string>().ShouldBe(job["id"]!.GetValue<string>());
        done["status"]!.GetValue<string>().ShouldBe("Completed", done.ToJsonString());
        done["rows_synced"]!.GetValue<long>().ShouldBe(Rows);
        await WarehouseShouldEqualTheSourceAsync("killed");

        // Concurrent reloads over the survivor start one run, never two of one table at once.
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => survivor.PostAsync($"{_env.Sources}{id}/reload/", new JsonObject())));
        await EventuallyAsync(async () => (await JobsAsync(survivor, id)) is { Count: 2 } after && after.All(j => j["status"]!.GetValue<string>() != "Running"),
            "the reload ran once", TimeSpan.FromSeconds(90));
        await WarehouseShouldEqualTheSourceAsync("killed");
        await _env.ShouldBeConsistentAsync();
        await _env.CanaryShouldBeAbsentAsync(output);
    }

    [Fact]
    public async Task the_services_database_crashing_mid_batch_leaves_the_warehouse_exact_once_it_is_back()
    {
        var node = await _env.StartNodeAsync("node-a", SmallPages);
        var api = _env.ClientOf(node);
        var id = (await api.PostAsync(_env.Sources, SlowSource("crashed"))).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await EventuallyAsync(async () => await JobsAsync(api, id) is [{ } job] && job["rows_synced"]!.GetValue<long>() >= 2000, "the run committed two batches");

        await _env.Database.CrashAsync();
        await Task.Delay(TimeSpan.FromSeconds(1));
        await _env.Database.StartAgainAsync();
        output.WriteLine("the service's PostgreSQL crashed mid-batch and is back");

        // The interrupted run ends one way or the other (taken up again, or failed on the service's side); then a run on
        // request must leave the warehouse exact.
        await EventuallyAsync(async () => await TryAsync(async () => (await JobsAsync(api, id)).All(j => j["status"]!.GetValue<string>() != "Running")),
            "the interrupted run ended", TimeSpan.FromSeconds(120));
        var jobs = await JobsAsync(api, id);
        output.WriteLine($"jobs after the crash: {string.Join(", ", jobs.Select(j => j.ToJsonString()))}");
        var interrupted = jobs[^1];
        if (interrupted["status"]!.GetValue<string>() == "Failed")
        {
            interrupted["error_class"]!.GetValue<string>().ShouldBe("internal", "the service's own database failing is never the source's fault");
            (await api.GetAsync($"{_env.Sources}{id}/")).Json["schemas"]!.AsArray().Single(t => t!["name"]!.GetValue<string>() == "slow")!["should_sync"]!.GetValue<bool>().ShouldBeTrue("and never disables");
        }

        (await api.PostAsync($"{_env.Sources}{id}/reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        await EventuallyAsync(async () => (await JobsAsync(api, id)) is [var latest, ..] && latest["status"]!.GetValue<string>() == "Completed"
                                          && (await JobsAsync(api, id)).All(j => j["status"]!.GetValue<string>() != "Running"),
            "a run after the crash completed", TimeSpan.FromSeconds(120));
        await WarehouseShouldEqualTheSourceAsync("crashed");
        await _env.ShouldBeConsistentAsync();
    }

    private static async Task<bool> TryAsync(Func<Task<bool>> condition)
    {
        try
        {
            return await condition();
        }
        catch (Exception e) when (e is HttpRequestException or ShouldAssertException or TaskCanceledException)
        {
            return false;
        }
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"Not within {(within ?? TimeSpan.FromSeconds(60)).TotalSeconds:F0} s: {what}");
            await Task.Delay(250);
        }
    }
}
