using System.Diagnostics;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.LocalPostgres;
using Stripe;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// Stripe objects into the warehouse (SYNC.md §3.5), end to end through the service against the Stripe-protocol server
/// the tests use, timed by the jobs' own start and end:
/// - a backfill of one table (customers of a dozen fields, nested objects among them) against the bare client loop: the
///   same pages listed through Stripe.net (<c>limit=100</c>, <c>starting_after</c>), parsed and discarded, in the same run;
/// - a webhook schema's drain of stored deliveries (signed, accepted by the service beforehand), in deliveries a second.
/// </summary>
internal static class StripeSyncBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        var objects = quick ? 5_000 : 20_000;
        var deliveries = quick ? 1_000 : 5_000;
        await using var stripe = await FakeStripeServer.StartAsync();
        await using var bench = await BenchHost.StartAsync(cluster, "bench_stripe", new Dictionary<string, string> { ["ExternalData:Stripe:ApiBase"] = stripe.ApiBase });
        var (key, account) = stripe.NewAccount();
        var seeded = account.Seed("Customer", objects, TimeSpan.FromHours(1));

        await BareLoopAsync(stripe.ApiBase, key); // warm-up: the server's and the client's first requests
        var bare = await BareLoopAsync(stripe.ApiBase, key);

        const string sources = "/api/projects/bench/external_data_sources/";
        var created = await bench.Http.PostAsync(sources, Measure.Json(new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["stripe_secret_key"] = key,
                ["schemas"] = new JsonArray(new JsonObject
                    { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "append", ["incremental_field"] = "created", ["incremental_field_type"] = "integer" }),
            },
        }));
        var id = JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        var backfill = await SyncBench.JobAsync(bench, id, 1, objects, "Customer");

        (await bench.Http.PostAsync($"{sources}{id}/create_webhook/", Measure.Json(new JsonObject()))).EnsureSuccessStatusCode();
        // A table's first run after it switched to webhook polls every object (ADR 0048): deliveries made before it are
        // covered by the poll, so the deliveries to drain are sent after it.
        (await bench.Http.PostAsync($"{sources}{id}/reload/", Measure.Json(new JsonObject()))).EnsureSuccessStatusCode();
        await SyncBench.JobAsync(bench, id, 2, objects, "Customer");
        var secret = stripe.Endpoints.Single(e => e.Url.EndsWith(id, StringComparison.Ordinal)).Secret;
        var inbound = bench.Host.Server.CreateClient();
        var now = account.Now.ToUnixTimeSeconds();
        var pushing = Stopwatch.StartNew();
        await Parallel.ForEachAsync(seeded.Take(deliveries), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (customer, ct) =>
        {
            var state = (JsonObject)customer.DeepClone();
            state["name"] = "updated by webhook";
            var body = account.AddEvent("customer.updated", state, now + 1).ToJsonString();
            using var request = new HttpRequestMessage(HttpMethod.Post, $"/public/webhooks/dwh/{id}") { Content = new StringContent(body) };
            request.Headers.Add("Stripe-Signature", FakeStripeServer.Sign(body, secret));
            (await inbound.SendAsync(request, ct)).EnsureSuccessStatusCode();
        });
        var accepted = pushing.Elapsed;
        (await bench.Http.PostAsync($"{sources}{id}/reload/", Measure.Json(new JsonObject()))).EnsureSuccessStatusCode();
        var drain = await SyncBench.JobAsync(bench, id, 3, deliveries, "Customer");

        Console.WriteLine("| Stripe run | service (s) | service objects/s | baseline | baseline (s) | baseline objects/s | ratio (service / baseline) | batches |");
        Console.WriteLine("|---|---:|---:|---|---:|---:|---:|---:|");
        Console.WriteLine($"| backfill of {objects:N0} customers (first run, append) | {backfill.Elapsed.TotalSeconds:F2} | {objects / backfill.Elapsed.TotalSeconds:N0} | " +
                          $"bare Stripe.net list loop | {bare.TotalSeconds:F2} | {objects / bare.TotalSeconds:N0} | {bare.TotalSeconds / backfill.Elapsed.TotalSeconds:F2}x | {backfill.Batches} |");
        Console.WriteLine($"| drain of {deliveries:N0} stored deliveries (webhook run) | {drain.Elapsed.TotalSeconds:F2} | {deliveries / drain.Elapsed.TotalSeconds:N0} deliveries/s | " +
                          $"(accepting them: {deliveries / accepted.TotalSeconds:N0}/s over HTTP, 8 senders) | | | | {drain.Batches} |");
        Console.WriteLine();
        Console.WriteLine("(The service lists the same pages through the same client, then types each page's fields, COPYs it into a " +
                          "transaction-private table and merges it by id with the job's position in one transaction per page. " +
                          "The drain unseals each delivery, merges a page of 1,000 and marks them processed in the same transaction.)");
    }

    /// <summary>Every page of customers through Stripe.net, parsed and discarded: what any reader of Stripe must do.</summary>
    private static async Task<TimeSpan> BareLoopAsync(string apiBase, string key)
    {
        var client = new StripeClient(new StripeClientOptions { ApiKey = key, ApiBase = apiBase });
        var clock = Stopwatch.StartNew();
        string? after = null;
        var seen = 0;
        while (true)
        {
            var path = "/v1/customers?limit=100" + (after is null ? "" : $"&starting_after={after}");
            var page = JsonNode.Parse((await client.RawRequestAsync(HttpMethod.Get, path)).Content)!;
            var data = page["data"]!.AsArray();
            seen += data.Count;
            if (data.Count == 0 || !page["has_more"]!.GetValue<bool>()) break;
            after = data[^1]!["id"]!.GetValue<string>();
        }

        return seen > 0 ? clock.Elapsed : throw new InvalidOperationException("the bare loop read nothing");
    }
}
