using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// kill -9 of the node running a Postgres full load once half the table is committed (issue 20, SYNC.md §7: a crash at 50 %
/// re-reads at most one batch). While no node runs, the source changes under the load: rows of the part already loaded are
/// updated and deleted, rows of the part still to load are updated, new rows are inserted. The next node goes on from the
/// last committed batch in a new snapshot (ADR 0051): it keeps every loaded row nothing has written since, drops the others,
/// reads again only the rows written since in the loaded part, and reads the rest — the warehouse then equals the source,
/// no row lost, none twice.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_a_full_load_is_killed_half_way(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Rows = 8_000;
    private const int PageSize = 1_000;
    private ReliabilityEnvironment _env = null!;

    public async Task InitializeAsync()
    {
        _env = await ReliabilityEnvironment.StartAsync();
        await _env.CreateSlowTableAsync(Rows);
    }

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact]
    public async Task the_next_node_goes_on_from_the_last_committed_batch_and_reads_again_only_what_changed_since()
    {
        var settings = new Dictionary<string, string> { ["Sync__PageSize"] = PageSize.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        var first = await _env.StartNodeAsync("load-a", settings);
        var body = _env.PostgresSource("halfway");
        body["payload"]!["schemas"] = new JsonArray(new JsonObject { ["name"] = "slow", ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        var id = (await _env.ClientOf(first).PostAsync(_env.Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        var job = await JobIdAsync(id);
        var staging = $"warehouse_{_env.ProjectId}.\"_stage_{job:N}\"";
        await EventuallyAsync(async () => await _env.QueryAsync<long>(
            $"SELECT coalesce(max((data->>'TotalRows')::bigint), 0)::bigint FROM {{schema}}.mt_events WHERE stream_id = '{job}' AND type = 'sync_batch_loaded'") >= Rows / 2,
            "half the table committed");
        await first.KillAsync();
        var committed = await _env.QueryAsync<long>($"SELECT count(*) FROM {staging}");
        var batches = await _env.QueryAsync<int>($"SELECT count(*)::int FROM {{schema}}.mt_events WHERE stream_id = '{job}' AND type = 'sync_batch_loaded'");
        output.WriteLine($"load-a killed with {committed} of {Rows} rows committed in {batches} batches");
        committed.ShouldBeLessThan(Rows, "killed before the end");

        // While no node runs: the loaded part changes (updates, deletes), so does the part still to load, and rows arrive.
        await _env.SourceAsync($"""
            UPDATE public.slow SET label = label || ' changed' WHERE id <= 50;
            DELETE FROM public.slow WHERE id BETWEEN 51 AND 80;
            UPDATE public.slow SET amount = amount + 1 WHERE id > {Rows - 50};
            INSERT INTO public.slow SELECT g, 'new ' || g, g FROM generate_series({Rows + 1}, {Rows + 100}) g;
            """);
        const long expected = Rows - 30 + 100;

        var next = await _env.StartNodeAsync("load-b", settings);
        var api = _env.ClientOf(next);
        JsonNode done = null!;
        await EventuallyAsync(async () =>
        {
            done = (await api.GetAsync($"{_env.Sources}{id}/jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().ShouldHaveSingleItem("the same job, taken over")!;
            return done["status"]!.GetValue<string>() != "Running";
        }, "the next node finished the load", TimeSpan.FromSeconds(120));
        output.WriteLine(done.ToJsonString());
        done["status"]!.GetValue<string>().ShouldBe("Completed", done.ToJsonString());
        done["rows_synced"]!.GetValue<long>().ShouldBe(expected);

        // What the resume kept, dropped and read again, as the job's history records it.
        var resumed = await _env.QueryAsync<string>(
            $"SELECT data::text FROM {{schema}}.mt_events WHERE stream_id = '{job}' AND type = 'sync_load_resumed'");
        output.WriteLine(resumed);
        var facts = JsonNode.Parse(resumed)!;
        var (kept, dropped, again) = (facts["KeptRows"]!.GetValue<long>(), facts["DroppedRows"]!.GetValue<long>(), facts["ReadAgainRows"]!.GetValue<long>());
        facts["Batches"]!.GetValue<int>().ShouldBe(batches);
        dropped.ShouldBe(80, "the 50 rows updated and the 30 deleted in the loaded part leave it");
        kept.ShouldBe(committed - 80, "every other loaded row stays");
        again.ShouldBeLessThanOrEqualTo(50, "only rows written since are read again");
        var after = await _env.QueryAsync<long>(
            $"SELECT coalesce(sum((data->>'Rows')::bigint), 0)::bigint FROM {{schema}}.mt_events WHERE stream_id = '{job}' AND type = 'sync_batch_loaded' AND (data->>'Batch')::int > {batches}");
        (kept + again + after).ShouldBe(expected, "after the resume, the rows read are the unloaded part, the 50 updated and the 100 new — never a kept row again");
        output.WriteLine($"kept {kept}, dropped {dropped}, read again {again}, then {after} rows of the rest");

        (await _env.QueryAsync<long>($"SELECT count(*) FROM warehouse_{_env.ProjectId}.halfwaypostgres_slow")).ShouldBe(expected);
        (await _env.QueryAsync<long>($"SELECT count(DISTINCT id) FROM warehouse_{_env.ProjectId}.halfwaypostgres_slow")).ShouldBe(expected);
        var warehouse = await _env.QueryAsync<string>(
            $"SELECT md5(string_agg(id || '|' || label || '|' || amount, ',' ORDER BY id)) FROM warehouse_{_env.ProjectId}.halfwaypostgres_slow");
        await using (var source = new NpgsqlConnection(_env.Database.ConnectionStringFor(_env.Source.Name)))
        {
            await source.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT md5(string_agg(id || '|' || label || '|' || amount, ',' ORDER BY id)) FROM public.slow", source);
            warehouse.ShouldBe((string)(await command.ExecuteScalarAsync())!, "the warehouse equals the source");
        }

        (await _env.QueryAsync<long>($"SELECT count(*) FROM pg_tables WHERE schemaname = 'warehouse_{_env.ProjectId}' AND tablename LIKE '\\_stage\\_%'"))
            .ShouldBe(0, "no staging table left behind");
        await _env.ShouldBeConsistentAsync();
    }

    private async Task<Guid> JobIdAsync(string sourceId)
    {
        await EventuallyAsync(async () => await _env.QueryAsync<long>($"SELECT count(*) FROM {{schema}}.mt_doc_syncjob WHERE source_id = '{sourceId}'") > 0, "the job started");
        return await _env.QueryAsync<Guid>($"SELECT id FROM {{schema}}.mt_doc_syncjob WHERE source_id = '{sourceId}'");
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"Not within {(within ?? TimeSpan.FromSeconds(60)).TotalSeconds:F0} s: {what}");
            await Task.Delay(100);
        }
    }
}
