using System.Collections.Concurrent;
using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// kill -9 of the service in the middle of writes and of scheduled work (stash expiry, a deleted source's clean-up
/// caught while it talks to Stripe): after a restart nothing is half-applied and every scheduled message has fired
/// exactly once. Then the same with two nodes on one database: the async daemon runs on exactly one of them and
/// moves when that one is killed; the durable work of a dead node is finished by the live one, once.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_a_node_is_killed(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly Dictionary<string, string> ShortStashes = new() { ["ExternalData__Credentials__TimeToLive"] = "00:00:04" };
    private ReliabilityEnvironment _env = null!;

    public async Task InitializeAsync() => _env = await ReliabilityEnvironment.StartAsync();

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact]
    public async Task mid_writes_and_mid_scheduled_work_then_after_a_restart_nothing_is_half_applied_and_every_message_fires_once()
    {
        var node = await _env.StartNodeAsync("node-a", ShortStashes);
        var api = _env.ClientOf(node);
        var sources = new List<string>();
        for (var n = 0; n < 8; n++)
            sources.Add((await api.PostAsync(_env.Sources, _env.PostgresSource($"kill{n}_{Guid.NewGuid():N}"[..14]))).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>());

        // Scheduled work in flight: stashes that expire while the node is dead, and a clean-up stuck in a Stripe call.
        var stashes = new List<string>();
        for (var n = 0; n < 3; n++)
            stashes.Add((await api.PostAsync($"{_env.Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = _env.PostgresConfig() }))
                .ShouldHaveStatus(HttpStatusCode.Created).Json["credential_id"]!.GetValue<string>());
        var stripeId = await _env.StripeSourceWithWebhookAsync(api);
        _env.Stripe.DeleteDelay = TimeSpan.FromSeconds(3);

        var acknowledged = new ConcurrentDictionary<string, string>();
        var unsure = new ConcurrentDictionary<string, ConcurrentBag<string>>();
        using var stop = new CancellationTokenSource();
        var writers = sources.Select((id, c) => Task.Run(async () =>
        {
            var client = _env.ClientOf(node, TimeSpan.FromSeconds(10));
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var description = $"k{c}-{n}";
                try
                {
                    var response = await client.PatchAsync($"{_env.Sources}{id}/", new JsonObject { ["description"] = description });
                    response.ShouldHaveStatus(HttpStatusCode.OK);
                    acknowledged[id] = description;
                    unsure.TryRemove(id, out _);
                }
                catch (HttpRequestException)
                {
                    // The node died with this request in flight: it may or may not have committed.
                    unsure.GetOrAdd(id, _ => []).Add(description);
                    return;
                }
            }
        })).ToList();

        await Task.Delay(TimeSpan.FromSeconds(1.5));
        (await api.DeleteAsync($"{_env.Sources}{stripeId}/")).ShouldHaveStatus(HttpStatusCode.NoContent);
        await Task.Delay(TimeSpan.FromSeconds(0.5));
        // The clean-up is now inside its Stripe DELETE (3 s) and the writers are mid-flight.
        _env.Stripe.Requests.ShouldContain(r => r.Path.StartsWith("/v1/webhook_endpoints", StringComparison.Ordinal));
        await node.KillAsync();
        await stop.CancelAsync();
        await Task.WhenAll(writers);
        acknowledged.Count.ShouldBe(sources.Count, "every writer had writes acknowledged before the kill");

        await Task.Delay(TimeSpan.FromSeconds(4)); // the stashes' expiry passes while no node runs
        _env.Stripe.DeleteDelay = TimeSpan.Zero;
        var restarted = await _env.StartNodeAsync("node-a", ShortStashes, node.Port);
        var again = _env.ClientOf(restarted);

        await EventuallyAsync(async () => await CountAsync("credentials_expired", stashes) == stashes.Count, "every stash expired after the restart");
        await EventuallyAsync(async () => await CountAsync("source_secrets_shredded", [stripeId]) == 1, "the interrupted clean-up finished after the restart");
        await Task.Delay(TimeSpan.FromSeconds(3)); // long enough for a duplicate to show up
        (await CountAsync("credentials_expired", stashes)).ShouldBe(stashes.Count, "each expiry fired exactly once");
        (await CountAsync("source_secrets_shredded", [stripeId])).ShouldBe(1);
        (await CountAsync("webhook_deleted", [stripeId])).ShouldBe(1, "the webhook's removal is recorded once");
        _env.Stripe.Endpoints.ShouldBeEmpty("the endpoint is gone from Stripe");

        foreach (var id in sources)
        {
            var description = (await again.GetAsync($"{_env.Sources}{id}/")).ShouldHaveStatus(HttpStatusCode.OK).Json["description"]?.GetValue<string>();
            if (description == acknowledged[id]) continue;
            (unsure.TryGetValue(id, out var maybe) && maybe.Contains(description!)).ShouldBeTrue($"{id} ends with '{description}', not its acknowledged '{acknowledged[id]}'");
        }

        await _env.ShouldBeConsistentAsync();
        await _env.CanaryShouldBeAbsentAsync(output, FakeStripeServer.FullKey);
    }

    [Fact]
    public async Task two_nodes_share_one_database_and_the_survivor_takes_over_the_daemon_and_the_durable_work()
    {
        var a = await _env.StartNodeAsync("node-a", ShortStashes);
        var b = await _env.StartNodeAsync("node-b", ShortStashes);
        var clients = new[] { _env.ClientOf(a), _env.ClientOf(b) };
        var first = await SteadyDaemonHolderAsync(TimeSpan.FromSeconds(30));
        output.WriteLine($"async daemon on {first}");

        // Load split over both nodes: sources made on one are written on the other.
        var sources = new List<string>();
        for (var n = 0; n < 6; n++)
            sources.Add((await clients[n % 2].PostAsync(_env.Sources, _env.PostgresSource($"two{n}_{Guid.NewGuid():N}"[..14]))).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>());
        await Task.WhenAll(sources.Select((id, c) => Task.Run(async () =>
        {
            for (var n = 0; n < 20; n++)
                (await clients[(c + n) % 2].PatchAsync($"{_env.Sources}{id}/", new JsonObject { ["description"] = $"t{c}-{n}" })).ShouldHaveStatus(HttpStatusCode.OK);
        })));

        // Durable work scheduled on the node about to die.
        var (holder, survivor) = first == "node-a" ? (a, b) : (b, a);
        var survivorClient = _env.ClientOf(survivor);
        var stashes = new List<string>();
        for (var n = 0; n < 3; n++)
            stashes.Add((await _env.ClientOf(holder).PostAsync($"{_env.Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = _env.PostgresConfig() }))
                .ShouldHaveStatus(HttpStatusCode.Created).Json["credential_id"]!.GetValue<string>());

        await holder.KillAsync();
        var takeover = System.Diagnostics.Stopwatch.StartNew();
        var survivorName = first == "node-a" ? "node-b" : "node-a";
        (await SteadyDaemonHolderAsync(TimeSpan.FromSeconds(45))).ShouldBe(survivorName, "the daemon moves to the surviving node");
        output.WriteLine($"{first} killed; the async daemon runs on {survivorName} {takeover.Elapsed.TotalSeconds:F1} s later");
        for (var n = 0; n < 10; n++)
            (await survivorClient.PatchAsync($"{_env.Sources}{sources[0]}/", new JsonObject { ["description"] = $"after-{n}" })).ShouldHaveStatus(HttpStatusCode.OK);
        var head = await _env.QueryAsync<long>("SELECT max(seq_id) FROM {schema}.mt_events");
        try
        {
            // Eventually, not fast: a shard that failed to start is retried with a back-off, which is slow but not lost work.
            var catchUp = System.Diagnostics.Stopwatch.StartNew();
            // The projections' rows only: the high-water agent keeps its own (its mark, its allocation fence, a stuck gap it skipped).
            await EventuallyAsync(async () => await _env.QueryAsync<long>("SELECT coalesce(min(last_seq_id), 0) FROM {schema}.mt_event_progression WHERE name NOT LIKE 'HighWater%'") >= head,
                "the audit projection catches up on the survivor", TimeSpan.FromSeconds(90));
            output.WriteLine($"the audit projection caught up on the survivor {catchUp.Elapsed.TotalSeconds:F1} s after the last write");
        }
        catch (ShouldAssertException)
        {
            // What a stall looks like, for the next run that sees one: every progression row against the head, and the survivor's last words.
            output.WriteLine($"head {head}; progression: {await _env.ProgressionAsync()}");
            output.WriteLine(string.Join('\n', survivor.Output.Split('\n').TakeLast(60)));
            throw;
        }

        await EventuallyAsync(async () => await CountAsync("credentials_expired", stashes) == stashes.Count, "the dead node's expiries fire on the survivor", TimeSpan.FromSeconds(60));
        output.WriteLine($"the dead node's 3 stash expiries fired on {survivorName} {takeover.Elapsed.TotalSeconds:F1} s after the kill");
        await Task.Delay(TimeSpan.FromSeconds(3));
        (await CountAsync("credentials_expired", stashes)).ShouldBe(stashes.Count, "each expiry fired exactly once across nodes");
        (await survivorClient.GetAsync($"{_env.Sources}{sources[0]}/")).Json["description"]!.GetValue<string>().ShouldBe("after-9");
        await _env.ShouldBeConsistentAsync();
        await _env.CanaryShouldBeAbsentAsync(output);
    }

    /// <summary>Which nodes hold the async daemon's advisory lock: Marten's HotCold takes it on a connection of the
    /// node's own pool (so with the node's application name) and keeps it while it runs the async projections.
    /// Wolverine's advisory locks are taken on connections it names <c>wolverine-advisory-lock:…</c>, so they do not count.</summary>
    private async Task<List<string>> DaemonHoldersAsync()
    {
        var holders = await _env.QueryAsync<string>("""
            SELECT coalesce(string_agg(DISTINCT a.application_name, ',' ORDER BY a.application_name), '')
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'node-%'
            """);
        return holders.Length == 0 ? [] : [.. holders.Split(',')];
    }

    /// <summary>The one node holding the daemon's lock, seen alone in four polls in a row: a node also takes advisory
    /// locks for a moment now and then (a schema check at start-up), which must not count as running the daemon.</summary>
    private async Task<string> SteadyDaemonHolderAsync(TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        string? seen = null;
        var times = 0;
        while (DateTime.UtcNow < deadline)
        {
            var holders = await DaemonHoldersAsync();
            if (holders is [var only])
            {
                times = only == seen ? times + 1 : 1;
                seen = only;
                if (times == 4) return only;
            }
            else
            {
                times = 0;
            }

            await Task.Delay(250);
        }

        throw new ShouldAssertException($"Not within {within.TotalSeconds:F0} s: exactly one node holds the async daemon's lock");
    }

    private Task<long> CountAsync(string eventType, IEnumerable<string> streams) =>
        _env.QueryAsync<long>($"SELECT count(*) FROM {{schema}}.mt_events WHERE type = '{eventType}' AND stream_id IN ({string.Join(',', streams.Select(s => $"'{s}'"))})");

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
