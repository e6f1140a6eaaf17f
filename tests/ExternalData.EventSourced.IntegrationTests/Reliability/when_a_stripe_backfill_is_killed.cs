using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// kill -9 of the node running a Stripe backfill while it asks for page 10 of 25 (a batch is a page here): another node
/// takes the job over and goes on after the last committed page (Stripe lists newest first; the job's position is the oldest object it
/// committed), so no page is read twice, and every customer lands exactly once.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_a_stripe_backfill_is_killed(ITestOutputHelper output) : IAsyncLifetime
{
    private ReliabilityEnvironment _env = null!;

    public async Task InitializeAsync() => _env = await ReliabilityEnvironment.StartAsync();

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact]
    public async Task at_page_10_of_25_the_next_node_resumes_after_the_last_committed_page_without_duplicates()
    {
        // A batch is a page here (Sync:PageSize 100), so "nothing read twice" is exact to the page.
        var onePagePerBatch = new Dictionary<string, string> { ["Sync__PageSize"] = "100" };
        var node = await _env.StartNodeAsync("stripe-a", onePagePerBatch);
        var (key, account) = _env.Stripe.NewAccount();
        var seeded = account.Seed("Customer", 2500);
        var killed = new TaskCompletionSource();
        account.OnPage = async n =>
        {
            if (n != 10) return;
            await node.KillAsync();
            killed.TrySetResult();
        };
        var body = new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = key },
                ["schemas"] = new JsonArray(new JsonObject
                    { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "append", ["incremental_field"] = "created", ["incremental_field_type"] = "integer" }),
            },
        };
        var id = (await _env.ClientOf(node).PostAsync(_env.Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await killed.Task.WaitAsync(TimeSpan.FromSeconds(60));
        account.OnPage = null;
        // The next page is asked for while a batch commits: at the kill, page 9's commit may or may not have ended.
        var committed = await _env.QueryAsync<long>($"SELECT count(*) FROM warehouse_{_env.ProjectId}.\"_stage_{await JobIdAsync(id):N}\"");
        committed.ShouldBeOneOf(800, 900);

        var next = await _env.StartNodeAsync("stripe-b", onePagePerBatch);
        var api = _env.ClientOf(next);
        var deadline = DateTimeOffset.UtcNow.AddSeconds(90);
        JsonNode job;
        while (true)
        {
            job = (await api.GetAsync($"{_env.Sources}{id}/jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().Single()!;
            if (job["status"]!.GetValue<string>() != "Running") break;
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"the job was not taken over: {job.ToJsonString()}\n{next.Output}");
            await Task.Delay(250);
        }

        output.WriteLine(job.ToJsonString());
        job["status"]!.GetValue<string>().ShouldBe("Completed", job.ToJsonString());
        job["rows_synced"]!.GetValue<long>().ShouldBe(2500);
        (account.Pages - 10).ShouldBe((int)(2500 - committed) / 100, "no committed page is read again");
        (await _env.QueryAsync<long>($"SELECT count(*) FROM warehouse_{_env.ProjectId}.stripe_customer")).ShouldBe(2500);
        (await _env.QueryAsync<long>($"SELECT count(DISTINCT id) FROM warehouse_{_env.ProjectId}.stripe_customer")).ShouldBe(2500);
        var ids = string.Join(",", seeded.Select(o => o["id"]!.GetValue<string>()).Order(StringComparer.Ordinal));
        (await _env.QueryAsync<string>($"SELECT string_agg(id, ',' ORDER BY id COLLATE \"C\") FROM warehouse_{_env.ProjectId}.stripe_customer")).ShouldBe(ids);
    }

    private async Task<Guid> JobIdAsync(string sourceId) =>
        await _env.QueryAsync<Guid>($"SELECT id FROM {{schema}}.mt_doc_syncjob WHERE source_id = '{sourceId}'");
}
