using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// A schema's next run is a durable scheduled message (ADR 0043): the service is killed between two runs, the due time
/// passes while it is down, and after the restart the run fires, once, recorded as the scheduler's; then the next one
/// is armed again.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_a_node_restarts_between_scheduled_runs : IAsyncLifetime
{
    private ReliabilityEnvironment _env = null!;

    public async Task InitializeAsync() => _env = await ReliabilityEnvironment.StartAsync();

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private const string ScheduledDue = "FROM {schema}.wolverine_incoming_envelopes WHERE message_type LIKE '%SyncDue%' AND status = 'Scheduled'";

    [Fact]
    public async Task the_next_run_still_fires_once()
    {
        var node = await _env.StartNodeAsync("node-a");
        var api = _env.ClientOf(node);
        var id = (await api.PostAsync(_env.Sources, _env.PostgresSource($"sched_{Guid.NewGuid():N}"[..14]))).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();

        await EventuallyAsync(async () => await JobsAsync(api, id) is [{ } job] && job["status"]!.GetValue<string>() == "Completed", "the first run ended");
        await EventuallyAsync(async () => await _env.QueryAsync<long>($"SELECT count(*) {ScheduledDue}") == 1, "the next run is a scheduled message in the database");

        await node.KillAsync();
        // The due time passes while no node runs: the stored message's time is moved to now, as six hours going by would.
        (await _env.QueryAsync<long>($"WITH due AS (UPDATE {{schema}}.wolverine_incoming_envelopes SET execution_time = now() WHERE message_type LIKE '%SyncDue%' RETURNING 1) SELECT count(*) FROM due"))
            .ShouldBe(1);

        var restarted = await _env.StartNodeAsync("node-a", null, node.Port);
        var again = _env.ClientOf(restarted);
        await EventuallyAsync(async () => (await JobsAsync(again, id)).Count == 2 && (await JobsAsync(again, id))[0]["status"]!.GetValue<string>() == "Completed",
            "the scheduled run fired after the restart", TimeSpan.FromSeconds(60));
        var scheduled = (await JobsAsync(again, id))[0];
        scheduled["trigger"]!.GetValue<string>().ShouldBe("schedule");
        scheduled["created_by"]!.GetValue<string>().ShouldBe("system:scheduler");

        await Task.Delay(TimeSpan.FromSeconds(3)); // long enough for a duplicate to show up
        (await JobsAsync(again, id)).Count.ShouldBe(2, "the due time ran once");
        await EventuallyAsync(async () => await _env.QueryAsync<long>($"SELECT count(*) {ScheduledDue}") == 1, "the run after it is armed");
    }

    private static async Task<List<JsonNode>> JobsAsync(ReliabilityEnvironment.Client api, string id) =>
        (await api.GetAsync($"/api/projects/7001/external_data_sources/{id}/jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().Select(j => j!).ToList();

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"Not within {(within ?? TimeSpan.FromSeconds(30)).TotalSeconds:F0} s: {what}");
            await Task.Delay(250);
        }
    }
}
