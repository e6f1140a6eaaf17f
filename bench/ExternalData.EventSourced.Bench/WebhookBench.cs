using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.LocalPostgres;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Logging;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// Webhook deliveries against writes to the same source: PATCH latency with no deliveries (the baseline), then the
/// same PATCHes while concurrent senders push signed Stripe deliveries as fast as the service takes them. The
/// deliveries never touch the source's stream, so the ratio should stay near 1 and no PATCH may answer 409.
/// The deliveries' own rate is paired with B1, the raw work of one delivery (Stripe.net checks the signature, one
/// INSERT … ON CONFLICT DO NOTHING keyed by the event id), and B2, that work behind a minimal ASP.NET Core endpoint
/// on the same in-memory HTTP stack, each from the same 8 senders for the same time.
/// </summary>
internal static class WebhookBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        var senders = 8;
        var burst = TimeSpan.FromSeconds(quick ? 3 : 10);
        var patches = quick ? 30 : 100;

        await using var stripe = await FakeStripeServer.StartAsync();
        await using var bench = await BenchHost.StartAsync(cluster, "bench_webhooks", new Dictionary<string, string> { ["ExternalData:Stripe:ApiBase"] = stripe.ApiBase });
        var host = bench.Host;
        var http = bench.Http;
        const string sources = "/api/projects/1/external_data_sources/";
        var created = await JsonAsync(await http.PostAsync(sources, Measure.Json(new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["stripe_secret_key"] = FakeStripeServer.FullKey,
                ["schemas"] = new JsonArray(new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
            },
        })));
        var id = created["id"]!.GetValue<string>();
        var url = $"{sources}{id}/";
        (await JsonAsync(await http.PostAsync($"{url}create_webhook/", Measure.Json(new JsonObject()))))["success"]!.GetValue<bool>().ShouldBeTrue("webhook registration");
        var secret = stripe.Endpoints.Single(e => e.Url.EndsWith(id, StringComparison.Ordinal)).Secret;
        var inbound = host.Server.CreateClient();

        // Warm-up: the first PATCH and the first delivery pay their one-off code generation.
        for (var n = 0; n < 5; n++)
        {
            await PatchAsync(http, url, n);
            await DeliverAsync(inbound, id, secret);
        }

        var (idle, idleConflicts) = await PatchLatenciesAsync(http, url, patches);

        var delivered = 0L;
        var failed = 0L;
        using var stop = new CancellationTokenSource(burst);
        var clock = Stopwatch.StartNew();
        var pushers = Enumerable.Range(0, senders).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (await DeliverAsync(inbound, id, secret) == HttpStatusCode.OK) Interlocked.Increment(ref delivered);
                else Interlocked.Increment(ref failed);
            }
        })).ToList();
        var (busy, busyConflicts) = await PatchLatenciesAsync(http, url, patches, stop.Token);
        await Task.WhenAll(pushers);
        var seconds = clock.Elapsed.TotalSeconds;

        // The baselines' raw work of a delivery.
        var raw = new Npgsql.NpgsqlDataSourceBuilder(cluster.ConnectionString).Build();
        await using (var create = raw.CreateCommand("""
            DROP SCHEMA IF EXISTS bench_raw_webhooks CASCADE; CREATE SCHEMA bench_raw_webhooks;
            CREATE TABLE bench_raw_webhooks.deliveries (event_id text PRIMARY KEY, source_id uuid NOT NULL, received_at timestamptz NOT NULL, data jsonb NOT NULL);
            """))
            await create.ExecuteNonQueryAsync();

        async Task<bool> RawDeliverAsync(string body, string signature)
        {
            try { Stripe.EventUtility.ValidateSignature(body, signature, secret); }
            catch (Stripe.StripeException) { return false; }
            var eventId = JsonNode.Parse(body)!["id"]!.GetValue<string>();
            await using var insert = raw.CreateCommand("INSERT INTO bench_raw_webhooks.deliveries VALUES ($1, $2, now(), $3::jsonb) ON CONFLICT (event_id) DO NOTHING");
            insert.Parameters.Add(new Npgsql.NpgsqlParameter { Value = eventId });
            insert.Parameters.Add(new Npgsql.NpgsqlParameter { Value = Guid.Parse(id) });
            insert.Parameters.Add(new Npgsql.NpgsqlParameter { Value = body });
            await insert.ExecuteNonQueryAsync();
            return true;
        }

        var minimal = WebApplication.CreateSlimBuilder();
        minimal.WebHost.UseTestServer();
        minimal.Logging.ClearProviders();
        await using var b2 = minimal.Build();
        b2.MapPost("/raw/webhooks/{sourceId:guid}", async (HttpRequest request) =>
        {
            using var reader = new StreamReader(request.Body);
            var body = await reader.ReadToEndAsync();
            return await RawDeliverAsync(body, request.Headers["Stripe-Signature"].ToString())
                ? Results.Ok() : Results.BadRequest();
        });
        await b2.StartAsync();
        var b2Client = b2.GetTestClient();
        var b2Rate = await DeliveryRateAsync(senders, burst, async () => await DeliverAsync(b2Client, id, secret, "/raw/webhooks/") == HttpStatusCode.OK);
        var b1Rate = await DeliveryRateAsync(senders, burst, () =>
        {
            var body = FakeStripeServer.Event($"evt_{Guid.NewGuid():N}", "customer.updated", "customer");
            return RawDeliverAsync(body, FakeStripeServer.Sign(body, secret));
        });
        var serviceRate = delivered / seconds;

        Console.WriteLine($"Webhook deliveries vs writes on one Stripe source: {senders} concurrent senders for {burst.TotalSeconds:F0} s, PATCH description meanwhile; " +
                          $"{Environment.ProcessorCount} cores, in-process HTTP, local PostgreSQL 15 (fsync off)");
        Console.WriteLine();
        Console.WriteLine("| measure | no deliveries (baseline) | during the burst | burst / baseline |");
        Console.WriteLine("|---|---:|---:|---:|");
        Console.WriteLine($"| PATCH median (ms) | {Measure.Percentile(idle, 50):F1} | {Measure.Percentile(busy, 50):F1} | {Measure.Percentile(busy, 50) / Measure.Percentile(idle, 50):F2}x |");
        Console.WriteLine($"| PATCH p95 (ms) | {Measure.Percentile(idle, 95):F1} | {Measure.Percentile(busy, 95):F1} | {Measure.Percentile(busy, 95) / Measure.Percentile(idle, 95):F2}x |");
        Console.WriteLine($"| PATCH answered 409 | {idleConflicts} of {idle.Count} | {busyConflicts} of {busy.Count} | |");
        Console.WriteLine($"| deliveries accepted per second | | {serviceRate:F0} ({delivered:N0} in {seconds:F1} s, {failed} refused) | |");
        Console.WriteLine();
        Console.WriteLine($"| deliveries/s, {senders} senders, {burst.TotalSeconds:F0} s | service | B2 | B1 | service / B2 | service / B1 |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        Console.WriteLine($"| signed Stripe deliveries (the service also PATCHes meanwhile) | {serviceRate:F0} | {b2Rate:F0} | {b1Rate:F0} | {serviceRate / b2Rate:F2}x | {serviceRate / b1Rate:F2}x |");
        Console.WriteLine();
        Console.WriteLine("The service admits ExternalData:Webhooks:ConcurrentDeliveries deliveries at a time (default: half the cores, 1 here) and queues the rest, " +
                          "so a burst cannot starve the writes (ADR 0026); the baselines have no such limit.");
    }

    private static async Task<(List<double> Ms, int Conflicts)> PatchLatenciesAsync(HttpClient http, string url, int count, CancellationToken until = default)
    {
        var ms = new List<double>();
        var conflicts = 0;
        for (var n = 0; n < count && (until == default || !until.IsCancellationRequested || ms.Count < 10); n++)
        {
            var clock = Stopwatch.StartNew();
            var status = await PatchAsync(http, url, n);
            ms.Add(clock.Elapsed.TotalMilliseconds);
            if (status == HttpStatusCode.Conflict) conflicts++;
            else if (status != HttpStatusCode.OK) throw new InvalidOperationException($"PATCH answered {status}");
        }

        return (ms, conflicts);
    }

    private static async Task<HttpStatusCode> PatchAsync(HttpClient http, string url, int n)
    {
        using var response = await http.PatchAsync(url, Measure.Json(new JsonObject { ["description"] = $"d{n}-{Guid.NewGuid():N}"[..20] }));
        return response.StatusCode;
    }

    private static async Task<double> DeliveryRateAsync(int senders, TimeSpan burst, Func<Task<bool>> deliver)
    {
        var accepted = 0L;
        using var stop = new CancellationTokenSource(burst);
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, senders).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
                if (await deliver()) Interlocked.Increment(ref accepted);
        })));
        return accepted / clock.Elapsed.TotalSeconds;
    }

    private static async Task<HttpStatusCode> DeliverAsync(HttpClient http, string sourceId, string secret, string route = "/public/webhooks/dwh/")
    {
        var body = FakeStripeServer.Event($"evt_{Guid.NewGuid():N}", "customer.updated", "customer");
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{route}{sourceId}") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.TryAddWithoutValidation("Stripe-Signature", FakeStripeServer.Sign(body, secret));
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }



    private static async Task<JsonObject> JsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    private static void ShouldBeTrue(this bool value, string what)
    {
        if (!value) throw new InvalidOperationException($"{what} failed");
    }
}
