using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// Runs the scheduler starts are taken from one queue by every node (ADR 0050): twelve tables' first runs (started with the
/// create one node answered) and then their scheduled runs (all due at once, fired by one node's poll) are run by both
/// nodes, each table once at a time, and the warehouse ends equal to the source. The tables read slowly on purpose (a
/// row-level security policy that sleeps a little per row), so a node still holds its runs when the next are taken.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_sync_runs_spread_over_two_nodes : IAsyncLifetime
{
    private const int Tables = 12;
    private const int Rows = 1_500;
    private ReliabilityEnvironment _env = null!;

    public async Task InitializeAsync()
    {
        _env = await ReliabilityEnvironment.StartAsync();
        await using var source = new NpgsqlConnection(_env.Database.ConnectionStringFor(_env.Source.Name));
        await source.OpenAsync();
        var tables = string.Concat(Enumerable.Range(1, Tables).Select(t => $"""
            CREATE TABLE public.spread_{t} (id bigint PRIMARY KEY, label text);
            INSERT INTO public.spread_{t} SELECT g, 'row ' || g FROM generate_series(1, {Rows}) g;
            ALTER TABLE public.spread_{t} ENABLE ROW LEVEL SECURITY;
            CREATE POLICY slow_reads ON public.spread_{t} FOR SELECT TO {SourceDatabase.Reader} USING (public.slowly(id));
            GRANT SELECT ON public.spread_{t} TO {SourceDatabase.Reader};
            """));
        await using var create = new NpgsqlCommand(
            $"CREATE FUNCTION public.slowly(bigint) RETURNS boolean LANGUAGE sql VOLATILE AS 'SELECT pg_sleep(0.0004) IS NOT NULL'; {tables}", source);
        await create.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact]
    public async Task scheduled_runs_are_taken_by_both_nodes_and_no_table_runs_twice_at_once()
    {
        var a = await _env.StartNodeAsync("node-a");
        var b = await _env.StartNodeAsync("node-b");
        var api = _env.ClientOf(a);
        var body = _env.PostgresSource("spread");
        body["payload"]!["schemas"] = new JsonArray(Enumerable.Range(1, Tables)
            .Select(t => (JsonNode)new JsonObject { ["name"] = $"spread_{t}", ["should_sync"] = true, ["sync_type"] = "full_refresh" }).ToArray());
        // The tables' first runs, started by the scheduler in the transaction of the create that node-a answered.
        var id = (await api.PostAsync(_env.Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        var first = await JobsWhenDoneAsync(api, id, Tables);
        await EventuallyAsync(async () => await _env.QueryAsync<long>($"SELECT count(*) {ScheduledDue}") == Tables, "every table's next run is armed");

        // Every table falls due at once, as twelve tables armed for the same time of day do: one node's poll fires them all.
        (await _env.QueryAsync<long>($"WITH due AS (UPDATE {{schema}}.wolverine_incoming_envelopes SET execution_time = now() WHERE message_type LIKE '%SyncDue%' RETURNING 1) SELECT count(*) FROM due"))
            .ShouldBe(Tables);
        var jobs = await JobsWhenDoneAsync(api, id, 2 * Tables);
        var scheduled = jobs.Where(j => j["trigger"]!.GetValue<string>() == "schedule").ToList();
        scheduled.Count.ShouldBe(Tables);

        jobs.ShouldAllBe(j => j["status"]!.GetValue<string>() == "Completed");
        foreach (var schema in jobs.GroupBy(j => j["schema"]!["id"]!.GetValue<string>()))
        {
            var runs = schema.OrderBy(j => j["created_at"]!.GetValue<DateTimeOffset>()).ToList();
            runs.Count.ShouldBe(2);
            runs[0]["finished_at"]!.GetValue<DateTimeOffset>().ShouldBeLessThanOrEqualTo(runs[1]["created_at"]!.GetValue<DateTimeOffset>(), "one run of a table at a time");
        }

        // Which node ran each job: the node header (host/pid) of its completion, recorded by the run itself.
        (await NodesAsync(first)).ShouldBe(2L, "the first runs were spread over both nodes, not kept by the node that took the create");
        (await NodesAsync(scheduled)).ShouldBe(2L, "the due runs were spread over both nodes, not kept by the node whose poll fired them");

        for (var t = 1; t <= Tables; t++)
            (await CountAsync(_env.Database.ConnectionStringFor("postgres"), $"warehouse_7001.spreadpostgres_spread_{t}")).ShouldBe(Rows);

        // A source of one table: its first run starts at once on the node that answered the create, as an asked-for run.
        var single = _env.PostgresSource("single");
        single["payload"]!["schemas"] = new JsonArray(new JsonObject { ["name"] = "spread_1", ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        var answeredBy = _env.ClientOf(b);
        var one = (await answeredBy.PostAsync(_env.Sources, single)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        var run = (await JobsWhenDoneAsync(answeredBy, one, 1)).ShouldHaveSingleItem();
        run["status"]!.GetValue<string>().ShouldBe("Completed");
        (await _env.QueryAsync<string>($"SELECT headers->>'node' FROM {{schema}}.mt_events WHERE type = 'sync_job_completed' AND stream_id = '{run["id"]}'"))
            .ShouldBe(await _env.QueryAsync<string>($"SELECT headers->>'node' FROM {{schema}}.mt_events WHERE type = 'source_created' AND stream_id = '{one}'"),
                "the one table's first run ran where the create was answered");
        GC.KeepAlive(b);
    }

    private const string ScheduledDue = "FROM {schema}.wolverine_incoming_envelopes WHERE message_type LIKE '%SyncDue%' AND status = 'Scheduled'";

    private Task<long> NodesAsync(IEnumerable<JsonNode> jobs) => _env.QueryAsync<long>(
        "SELECT count(DISTINCT headers->>'node') FROM {schema}.mt_events WHERE type = 'sync_job_completed' AND stream_id::text IN (" +
        string.Join(", ", jobs.Select(j => $"'{j["id"]!.GetValue<string>()}'")) + ")");

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"Not within 30 s: {what}");
            await Task.Delay(250);
        }
    }

    private static async Task<long> CountAsync(string connectionString, string table)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM {table}", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private async Task<List<JsonNode>> JobsWhenDoneAsync(ReliabilityEnvironment.Client api, string id, int count)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            var jobs = (await api.GetAsync($"{_env.Sources}{id}/jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().Select(j => j!).ToList();
            if (jobs.Count >= count && jobs.All(j => j["status"]!.GetValue<string>() != "Running")) return jobs;
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"jobs did not end: {string.Join(", ", jobs.Select(j => j.ToJsonString()))}");
            await Task.Delay(250);
        }
    }
}
