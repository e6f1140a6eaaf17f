using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// 32 clients mix every kind of request on one node for a bounded time; then the database crashes under load and
/// comes back. Throughout: no 5xx but the outage's 503, no request hangs, every acknowledged write is there
/// afterwards, nothing is half-applied, and the secrets used show up nowhere.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_the_service_is_under_load_and_its_database_fails(ITestOutputHelper output) : IAsyncLifetime
{
    private ReliabilityEnvironment _env = null!;
    private ServiceProcess _node = null!;

    public async Task InitializeAsync()
    {
        _env = await ReliabilityEnvironment.StartAsync();
        _node = await _env.StartNodeAsync("node-a");
    }

    public async Task DisposeAsync() => await _env.DisposeAsync();

    /// <summary>One client's own source and the last description the service acknowledged for it.</summary>
    private sealed class Owned
    {
        public required string Id { get; set; }
        public string? Acknowledged { get; set; }
        /// <summary>Sent, answered with a 503 or not answered: it may or may not have landed.</summary>
        public List<string> Unsure { get; } = [];
    }

    [Fact]
    public async Task thirty_two_clients_mixing_every_endpoint_get_no_server_error_and_lose_no_write()
    {
        var api = _env.ClientOf(_node);
        var stripeId = await _env.StripeSourceWithWebhookAsync(api);
        var secret = _env.Stripe.Endpoints.Single().Secret;
        var owned = await CreateSourcesAsync(api, 32);
        var idle = _node.ResidentMiB;

        var counts = new ConcurrentDictionary<string, int>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(owned.Select((source, c) => Task.Run(async () =>
        {
            var client = _env.ClientOf(_node);
            var random = new Random(c);
            for (var n = 0; clock.Elapsed < ReliabilityMode.Load; n++)
            {
                var (name, response) = await OneRequestAsync(client, random, source, c, n, stripeId, secret);
                counts.AddOrUpdate(name, 1, (_, v) => v + 1);
                response.ShouldBeAnswerNotFailure(name);
            }
        })));

        var total = counts.Values.Sum();
        output.WriteLine($"{total} requests in {clock.Elapsed.TotalSeconds:F0} s ({total / clock.Elapsed.TotalSeconds:F0}/s) by 32 clients: " +
                         string.Join(", ", counts.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}")));
        output.WriteLine($"service memory: {idle:F0} MiB at idle, {_node.ResidentMiB:F0} MiB after the load");
        counts.Keys.Count.ShouldBeGreaterThanOrEqualTo(14, "every kind of request ran");

        await AcknowledgedWritesShouldBeThereAsync(api, owned);
        await WarehouseShouldEqualTheSourceAsync(api, owned);
        await _env.ShouldBeConsistentAsync();
        await _env.CanaryShouldBeAbsentAsync(output, FakeStripeServer.FullKey, secret);
    }

    [Fact]
    public async Task a_database_crash_under_load_gives_503s_then_the_service_recovers_by_itself_with_nothing_lost()
    {
        var api = _env.ClientOf(_node);
        var owned = await CreateSourcesAsync(api, 8);
        var statuses = new ConcurrentDictionary<int, int>();
        var slowest = TimeSpan.Zero;
        using var stop = new CancellationTokenSource();
        var writers = owned.Select((source, c) => Task.Run(async () =>
        {
            // A short client timeout: a request that hangs through the outage fails the test instead of waiting it out.
            var client = _env.ClientOf(_node, TimeSpan.FromSeconds(20));
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var description = $"c{c}-{n}";
                var one = Stopwatch.StartNew();
                var response = await client.PatchAsync($"{_env.Sources}{source.Id}/", new JsonObject { ["description"] = description });
                lock (statuses) slowest = one.Elapsed > slowest ? one.Elapsed : slowest;
                statuses.AddOrUpdate((int)response.Status, 1, (_, v) => v + 1);
                response.ShouldBeAnswerNotFailure("PATCH during the outage", outageAllowed: true);
                if (response.Status == HttpStatusCode.OK)
                {
                    source.Acknowledged = description;
                    source.Unsure.Clear();
                }
                else
                {
                    source.Unsure.Add(description);
                    await Task.Delay(100);
                }
            }
        })).ToList();

        await Task.Delay(TimeSpan.FromSeconds(2));
        await _env.Database.CrashAsync();
        var crashed = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(1));
        using var probe = new HttpClient { BaseAddress = new Uri(_node.BaseUrl), Timeout = TimeSpan.FromSeconds(20) };
        var ready = await probe.GetAsync("/health/ready");
        ready.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable, "ready says not ready while the database is down");
        var retrieve = await api.GetAsync($"{_env.Sources}{owned[0].Id}/");
        retrieve.ShouldBeAnswerNotFailure("GET during the outage", outageAllowed: true);
        retrieve.Status.ShouldBe(HttpStatusCode.ServiceUnavailable);
        await Task.Delay(TimeSpan.FromSeconds(3));

        await _env.Database.StartAgainAsync();
        var down = crashed.Elapsed;
        var recovered = Stopwatch.StartNew();
        while ((await probe.GetAsync("/health/ready")).StatusCode != HttpStatusCode.OK)
        {
            recovered.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(60), "the service recovers by itself");
            await Task.Delay(200);
        }

        var readyAfter = recovered.Elapsed;
        // Writes succeed again on their own, with no restart of the service.
        var before = statuses.GetValueOrDefault(200);
        await Task.Delay(TimeSpan.FromSeconds(2));
        await stop.CancelAsync();
        await Task.WhenAll(writers);
        statuses.GetValueOrDefault(200).ShouldBeGreaterThan(before, "writes succeed again after the database is back");
        statuses.GetValueOrDefault(503).ShouldBeGreaterThan(0, "writes during the outage were answered 503");

        output.WriteLine($"database down {down.TotalSeconds:F1} s; ready again {readyAfter.TotalSeconds:F1} s after it came back; slowest request {slowest.TotalSeconds:F1} s; " +
                         string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}")));
        await AcknowledgedWritesShouldBeThereAsync(api, owned);
        await _env.ShouldBeConsistentAsync();
        await _env.CanaryShouldBeAbsentAsync(output);
    }

    private async Task<List<Owned>> CreateSourcesAsync(ReliabilityEnvironment.Client api, int count)
    {
        var owned = new List<Owned>();
        foreach (var n in Enumerable.Range(0, count))
        {
            var created = await api.PostAsync(_env.Sources, _env.PostgresSource($"load{n}_{Guid.NewGuid():N}"[..14]));
            created.ShouldHaveStatus(HttpStatusCode.Created);
            owned.Add(new Owned { Id = created.Json["id"]!.GetValue<string>() });
        }

        return owned;
    }

    /// <summary>One request of the mix, picked at random; writes to the client's own source are tracked.</summary>
    private async Task<(string Name, ApiResponse Response)> OneRequestAsync(
        ReliabilityEnvironment.Client client, Random random, Owned source, int c, int n, string stripeId, string secret)
    {
        var url = $"{_env.Sources}{source.Id}/";
        switch (random.Next(22))
        {
            case 0 or 1 or 2:
                return ("retrieve", await client.GetAsync(url));
            case 3:
                return ("list", await client.GetAsync($"{_env.Sources}?limit=20"));
            case 4 or 5 or 6:
            {
                var description = $"c{c}-{n}";
                var response = await client.PatchAsync(url, new JsonObject { ["description"] = description });
                if (response.Status == HttpStatusCode.OK) source.Acknowledged = description;
                return ("patch", response);
            }
            case 7:
            {
                // If-Match with the version just read: nobody else writes this source, so it must succeed.
                var version = (await client.GetAsync(url)).Json["version"]!.GetValue<int>();
                var description = $"c{c}-{n}-if";
                var response = await client.PatchAsync(url, new JsonObject { ["description"] = description }, new Dictionary<string, string> { ["If-Match"] = $"\"{version}\"" });
                response.ShouldHaveStatus(HttpStatusCode.OK);
                source.Acknowledged = description;
                return ("patch-if-match", response);
            }
            case 8:
                return ("bulk_update_schemas", await client.PatchAsync($"{url}bulk_update_schemas/", new JsonObject
                {
                    ["schemas"] = new JsonArray(new JsonObject { ["name"] = "orders", ["should_sync"] = random.Next(2) == 0, ["sync_type"] = "full_refresh" }),
                }));
            case 9:
                return ("database_schema", await client.PostAsync($"{_env.Sources}database_schema/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = _env.PostgresConfig() }));
            case 10:
                return ("source_prefix", await client.PostAsync($"{_env.Sources}source_prefix/", new JsonObject { ["source_type"] = "Postgres", ["prefix"] = $"p{c}_{n}" }));
            case 11:
                return ("history", await client.GetAsync($"{url}history/"));
            case 12:
                return ("store_credentials", await client.PostAsync($"{_env.Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = _env.PostgresConfig() }));
            case 13:
                return ("wizard", await client.GetAsync($"{_env.Sources}wizard/"));
            case 14:
            {
                var response = await client.SendAsync(HttpMethod.Post, "/mcp", new JsonObject { ["jsonrpc"] = "2.0", ["id"] = n, ["method"] = "tools/list" },
                    new Dictionary<string, string> { ["Accept"] = "application/json, text/event-stream" });
                response.ShouldHaveStatus(HttpStatusCode.OK);
                return ("mcp", response);
            }
            case 15:
            {
                var body = FakeStripeServer.Event($"evt_{c}_{n}", "customer.updated", "customer", $"cus_{c}");
                var response = await client.SendAsync(HttpMethod.Post, $"/public/webhooks/dwh/{stripeId}", body,
                    new Dictionary<string, string> { ["Stripe-Signature"] = FakeStripeServer.Sign(body, secret) });
                response.ShouldHaveStatus(HttpStatusCode.OK);
                return ("webhook", response);
            }
            case 16:
                return ("audit_log", await client.GetAsync($"{_env.Sources}audit_log/"));
            case 17:
                return ("stored_credentials", await client.GetAsync($"{_env.Sources}stored_credentials/"));
            case 18:
                return ("check_cdc_prerequisites", await client.PostAsync($"{url}check_cdc_prerequisites_for_source/", new JsonObject()));
            case 19:
                return ("reload", await client.PostAsync($"{url}reload/", new JsonObject()));
            case 20:
            {
                // A resync of a paused table is refused (400, PostHog's rule); of an enabled one it reloads it whole.
                var schemaId = (await client.GetAsync(url)).Json["schemas"]!.AsArray().Single(t => t!["name"]!.GetValue<string>() == "orders")!["id"]!.GetValue<string>();
                var response = await client.PostAsync($"/api/projects/{_env.ProjectId}/external_data_schemas/{schemaId}/resync/", new JsonObject());
                if (response.Status != HttpStatusCode.OK) response.ShouldHaveStatus(HttpStatusCode.BadRequest);
                return ("resync", response);
            }
            default:
            {
                // Now and then a client deletes its source and starts over with a new one.
                var deleted = await client.DeleteAsync(url);
                deleted.ShouldHaveStatus(HttpStatusCode.NoContent);
                (await client.GetAsync(url)).ShouldHaveStatus(HttpStatusCode.NotFound);
                var created = await client.PostAsync(_env.Sources, _env.PostgresSource($"re{c}_{n}_{Guid.NewGuid():N}"[..14]));
                created.ShouldHaveStatus(HttpStatusCode.Created);
                source.Id = created.Json["id"]!.GetValue<string>();
                source.Acknowledged = null;
                return ("delete+create", created);
            }
        }
    }

    /// <summary>Once the runs the load started have ended, every source's orders table in the warehouse equals the source's:
    /// reloads, resyncs, toggles and schedules racing each other lost and doubled nothing.</summary>
    private async Task WarehouseShouldEqualTheSourceAsync(ReliabilityEnvironment.Client api, IEnumerable<Owned> owned)
    {
        var expected = await RowsAsync(_env.Database.ConnectionStringFor(_env.Source.Name), "public.orders");
        foreach (var source in owned)
        {
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while ((await api.GetAsync($"{_env.Sources}{source.Id}/jobs/")).Json.AsArray().Any(j => j!["status"]!.GetValue<string>() == "Running"))
            {
                if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"runs of {source.Id} did not end");
                await Task.Delay(200);
            }

            var current = (await api.GetAsync($"{_env.Sources}{source.Id}/")).Json;
            var table = current["schemas"]!.AsArray().Single(t => t!["name"]!.GetValue<string>() == "orders")!["table"];
            if (table is null) continue; // its only run was cancelled by a resync or a toggle before it completed
            (await RowsAsync(_env.Database.ConnectionStringFor("postgres"), $"warehouse_{_env.ProjectId}.\"{table["name"]!.GetValue<string>()}\""))
                .ShouldBe(expected, $"the warehouse table of {source.Id}");
        }
    }

    private static async Task<List<string>> RowsAsync(string connectionString, string table)
    {
        await using var connection = new Npgsql.NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand($"SELECT id::text || '|' || coalesce(total::text, '') || '|' || coalesce(updated_at::text, '') FROM {table}", connection);
        var rows = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0));
        rows.Sort(StringComparer.Ordinal);
        return rows;
    }

    /// <summary>The description each source ends with is the last one acknowledged, or one sent after it whose answer
    /// was lost to the outage (it may have committed just before the connection died).</summary>
    private async Task AcknowledgedWritesShouldBeThereAsync(ReliabilityEnvironment.Client api, IEnumerable<Owned> owned)
    {
        foreach (var source in owned)
        {
            var current = (await api.GetAsync($"{_env.Sources}{source.Id}/")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            var description = current["description"]?.GetValue<string>();
            if (description == source.Acknowledged) continue;
            source.Unsure.ShouldContain(description!, $"source {source.Id} ends with '{description}', neither the acknowledged '{source.Acknowledged}' nor a later unanswered write");
        }
    }
}
