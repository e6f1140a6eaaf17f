using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// Runs are taken from one queue by every node (ADR 0050): twelve tables' runs, all requested through one node, are run by
/// both, each table once at a time, and the warehouse ends equal to the source. The tables read slowly on purpose (a
/// row-level security policy that sleeps a little per row), so the first node would still be busy with its first runs
/// if it kept them all.
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
    public async Task runs_requested_through_one_node_are_run_by_both_and_no_table_twice_at_once()
    {
        var a = await _env.StartNodeAsync("node-a");
        var b = await _env.StartNodeAsync("node-b");
        var api = _env.ClientOf(a);
        var body = _env.PostgresSource("spread");
        body["payload"]!["schemas"] = new JsonArray(Enumerable.Range(1, Tables)
            .Select(t => (JsonNode)new JsonObject { ["name"] = $"spread_{t}", ["should_sync"] = true, ["sync_type"] = "full_refresh" }).ToArray());
        var id = (await api.PostAsync(_env.Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await JobsWhenDoneAsync(api, id, Tables);
        // A second round, asked for through the same node.
        (await api.PostAsync($"{_env.Sources}{id}/reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        var jobs = await JobsWhenDoneAsync(api, id, 2 * Tables);

        jobs.ShouldAllBe(j => j["status"]!.GetValue<string>() == "Completed");
        foreach (var schema in jobs.GroupBy(j => j["schema"]!["id"]!.GetValue<string>()))
        {
            var runs = schema.OrderBy(j => j["created_at"]!.GetValue<DateTimeOffset>()).ToList();
            runs.Count.ShouldBe(2);
            runs[0]["finished_at"]!.GetValue<DateTimeOffset>().ShouldBeLessThanOrEqualTo(runs[1]["created_at"]!.GetValue<DateTimeOffset>(), "one run of a table at a time");
        }

        // Which node ran each job: the node header of its completion, recorded by the run itself.
        var jobIds = string.Join(", ", jobs.Select(j => $"'{j["id"]!.GetValue<string>()}'"));
        var nodes = await _env.QueryAsync<long>(
            "SELECT count(DISTINCT headers->>'node') FROM {schema}.mt_events WHERE type = 'sync_job_completed' AND stream_id::text IN (" + jobIds + ")");
        nodes.ShouldBe(2L, "the runs were spread over both nodes, not kept where they were requested");

        for (var t = 1; t <= Tables; t++)
            (await CountAsync(_env.Database.ConnectionStringFor("postgres"), $"warehouse_7001.spreadpostgres_spread_{t}")).ShouldBe(Rows);
        GC.KeepAlive(b);
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
