using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// Property, over at least 10,000 generated requests to every route (REST, the MCP endpoint, the connect page, the
/// inbound webhook): wrong types, huge and deep JSON, invalid UUIDs, unicode, SQL fragments, SSRF hosts, masked
/// placeholders, duplicate keys and ids, forged signatures, tokens and If-Match values. Never a 5xx; every error is a
/// problem+json (an HTML page on the connect page; a JSON-RPC error on MCP, that protocol's own shape); and a rejected
/// request stores nothing. Runs against a host with the production network policy, so SSRF hosts are refused by
/// policy rather than dialled.
/// </summary>
[Collection(IntegrationCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class hostile_requests_fuzzer(AppFixture app, ITestOutputHelper output) : IntegrationContext(app)
{
    private static readonly string[] HostileStrings =
    [
        "", " ", "\u0000", "null", "********", "••••••••", "{{secret}}", "${DB_PASSWORD}", "vault:secret/db#password",
        "'; DROP TABLE mt_events; --", "1 OR 1=1", "\" OR \"\"=\"", "$$; SELECT pg_sleep(10); $$", "public; DROP SCHEMA public",
        "169.254.169.254", "metadata.google.internal", "localhost", "127.0.0.1", "[::1]", "0x7f000001", "2130706433", "10.0.0.1", "http://169.254.169.254/latest",
        "ünïcødé", "表", "😀🔥", "\u202eevil", "a\r\nX-Injected: 1", "../../etc/passwd", "%00", "%2e%2e%2f", "<script>alert(1)</script>",
        "Postgres", "Stripe", "full_refresh", "incremental", "cdc", "webhook", "append", "1min", "posthog", "self_managed",
        new string('x', 5_000), new string('é', 20_000),
    ];

    private static readonly Gen<JsonNode?> Scalar = Gen.Frequency<JsonNode?>(
        (1, Gen.Const((JsonNode?)null)), (1, Gen.Bool.Select(b => (JsonNode?)b)), (1, Gen.Int.Select(i => (JsonNode?)i)),
        (1, Gen.Long.Select(l => (JsonNode?)l)), (1, Gen.Double.Select(d => (JsonNode?)(double.IsFinite(d) ? d : 1e308))),
        (2, Gen.String.Select(s => (JsonNode?)s)), (4, Gen.OneOf(HostileStrings).Select(s => (JsonNode?)s)),
        (1, Gen.Guid.Select(g => (JsonNode?)g.ToString())));

    private static readonly string[] Keys =
    [
        "source_type", "payload", "prefix", "description", "access_method", "created_via", "direct_query_enabled", "job_inputs", "schemas", "host", "port",
        "database", "user", "password", "schema", "ssh_tunnel", "auth_method", "selection", "stripe_secret_key", "stripe_account_id", "should_sync", "sync_type",
        "id", "name", "credential_id", "tables", "incremental_field", "incremental_field_type", "sync_frequency", "cdc_enabled", "cdc_management_mode",
        "cdc_slot_name", "cdc_publication_name", "cdc_lag_warning_threshold_mb", "connection_string", "use_ssl", "enabled", "secretRef",
    ];

    private static Gen<JsonNode?> Value(int depth) => depth == 0 ? Scalar : Gen.Frequency(
        (6, Scalar),
        (2, Value(depth - 1).Array[0, 4].Select(a => (JsonNode?)new JsonArray(a.Select(n => n?.DeepClone()).ToArray()))),
        (2, Gen.Select(Gen.OneOf(Keys), Value(depth - 1)).Array[0, 4].Select(pairs => (JsonNode?)ObjectOf(pairs))));

    private static JsonObject ObjectOf((string, JsonNode?)[] pairs)
    {
        var body = new JsonObject();
        foreach (var (key, value) in pairs) body[key] = value?.DeepClone();
        return body;
    }

    private static readonly Gen<string> Body = Gen.Frequency(
        (10, Gen.Select(Gen.OneOf(Keys), Value(2)).Array[0, 7].Select(p => ObjectOf(p).ToJsonString())),
        // Schemas lists with duplicate names and ids.
        (2, Gen.Select(Gen.OneOf("orders", "customers", "Customer", "x"), Gen.Bool, Gen.OneOf("full_refresh", "incremental", "cdc", "bogus"))
            .Array[1, 6].Select(s => new JsonObject
            {
                ["schemas"] = new JsonArray(s.Select(t => (JsonNode)new JsonObject { ["name"] = t.Item1, ["id"] = "00000000-0000-0000-0000-000000000001", ["should_sync"] = t.Item2, ["sync_type"] = t.Item3 }).ToArray()),
            }.ToJsonString())),
        (2, Value(2).Select(v => v?.ToJsonString() ?? "null")),
        // Duplicate keys, deep nesting, a huge document, truncated and non-JSON text.
        (1, Gen.OneOf(
            """{"prefix":"a","prefix":"b","source_type":"Postgres","source_type":"Stripe"}""",
            new string('[', 5_000) + new string(']', 5_000),
            string.Concat(Enumerable.Repeat("{\"a\":", 2_000)) + "1" + new string('}', 2_000),
            "{\"description\":\"" + new string('d', 2_000_000) + "\"}",
            "[" + string.Join(',', Enumerable.Repeat("{\"name\":\"orders\",\"should_sync\":true}", 50_000)) + "]",
            "", "{", "}", "nul", "{\"a\":}", "\u00ff\u00fe", "source_type=Postgres&prefix=x", "\"\\ud800\"", "{\"a\":\"\\u0000\"}")));

    private static readonly string[] IdVariants = ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "1 OR 1=1", "%27%3B--", "ü", "..%2F..%2Fhealth", new string('f', 500)];

    [Fact]
    public async Task ten_thousand_hostile_requests_get_no_server_error_and_store_nothing_when_refused()
    {
        var own = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var otherProject = Random.Shared.Next(100_000, int.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var connect = new Uri((await Api.GetAsync($"{Sources}connect_link/?source_type=Postgres")).Json["connect_url"]!.GetValue<string>()).AbsolutePath;
        await using var production = await App.StartHostAsync(allowPrivateHosts: false);
        var http = production.Server.CreateClient();
        http.Timeout = TimeSpan.FromSeconds(30);

        Gen<string> Id = Gen.Frequency((4, Gen.Const(own)), (2, Gen.Guid.Select(g => g.ToString())), (2, Gen.OneOf(IdVariants)));
        Gen<string> Project = Gen.Frequency((8, Gen.Const(ProjectId)), (1, Gen.Const(otherProject)), (1, Gen.OneOf("abc", "-1", "0", "1%20OR%201=1", new string('9', 40))));
        string[] sourceRoutes = ["", "bulk_update_schemas/", "refresh_schemas/", "history/", "cdc_status/", "webhook_info/", "check_cdc_prerequisites_for_source/",
            "enable_cdc/", "disable_cdc/", "update_cdc_settings/", "create_webhook/", "delete_webhook/", "reload/", "../"];
        string[] collectionRoutes = ["", "database_schema/", "source_prefix/", "setup/", "store_credentials/", "check_cdc_prerequisites/", "wizard/", "connections/",
            "stored_credentials/", "audit_log/", "connect_link/", "connect_link/?source_type=Stripe", "?limit=-1", "?limit=abc&offset=%00", "?search=%27%3B--", "?limit=100000"];
        var methods = new[] { HttpMethod.Get, HttpMethod.Post, HttpMethod.Patch, HttpMethod.Delete, HttpMethod.Put };
        var tools = new[] { "external-data-sources-list", "external-data-sources-retrieve", "external-data-sources-create", "external-data-sources-partial-update",
            "external-data-sources-destroy", "data-warehouse-source-setup", "external-data-sources-create-webhook-create", "external-data-sources-check-cdc-prerequisites-create", "no-such-tool" };

        // A request: where it goes, how, with what body, and which headers — the kinds weighted so every surface gets thousands.
        var request = Gen.Frequency(
            (5, Gen.Select(Project, Id, Gen.OneOf(sourceRoutes), Gen.OneOf(methods), Body).Select((p, i, r, m, b) =>
                new Attempt("rest", m, $"/api/projects/{p}/external_data_sources/{i}/{r}", b))),
            (4, Gen.Select(Project, Gen.OneOf(collectionRoutes), Gen.OneOf(HttpMethod.Get, HttpMethod.Post), Body).Select((p, r, m, b) =>
                new Attempt("rest", m, $"/api/projects/{p}/external_data_sources/{r}", b))),
            (2, Gen.Select(Gen.OneOf(tools), Value(2), Gen.OneOf("tools/call", "tools/list", "initialize", "resources/read", "bogus", "")).Select((t, args, method) =>
                new Attempt("mcp", HttpMethod.Post, "/mcp", new JsonObject
                {
                    ["jsonrpc"] = "2.0", ["id"] = 1, ["method"] = method,
                    ["params"] = new JsonObject { ["name"] = t, ["arguments"] = args is JsonObject o ? o.DeepClone() : new JsonObject { ["project_id"] = args?.DeepClone(), ["id"] = own } },
                }.ToJsonString(), new Dictionary<string, string> { ["Accept"] = "application/json, text/event-stream" }))),
            (2, Gen.Select(Gen.OneOf(connect, "/connect/forged.token.value", "/connect/" + new string('A', 3_000), "/connect/%C3%BC", "/connect/..%2F..%2Fhealth"),
                Gen.OneOf(HttpMethod.Get, HttpMethod.Post), Gen.OneOf("", "/credentials"), Body).Select((path, m, tail, b) =>
                new Attempt("connect", m, path + tail, b))),
            (2, Gen.Select(Id, Body, Gen.OneOf("", "t=1,v1=deadbeef", "t=abc", "v1=" + new string('0', 64), "t=9999999999,v1=00", "garbage", "t=1,v1=1,v1=2"),
                Gen.OneOf(HttpMethod.Post, HttpMethod.Get)).Select((i, b, sig, m) =>
                new Attempt("webhook", m, $"/public/webhooks/dwh/{i}", b, sig.Length == 0 ? null : new Dictionary<string, string> { ["Stripe-Signature"] = sig }))));
        // Forged and malformed credentials and If-Match values on a share of the requests.
        var withHeaders = Gen.Select(request, Gen.Int[0, 9], Gen.OneOf("\"abc\"", "\"-1\"", "*", "W/\"1\"", "\"99999999999\"", "\u00e9"),
            Gen.OneOf("Bearer edk_forged", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Bearer " + new string('x', 10_000)))
            .Select((a, roll, ifMatch, auth) => roll switch
            {
                0 => a with { Headers = new Dictionary<string, string>(a.Headers ?? new Dictionary<string, string>()) { ["If-Match"] = ifMatch } },
                1 => a with { Authorization = auth },
                _ => a,
            });

        var counts = new Dictionary<string, int>();
        var slowest = new List<(double Ms, string What)>();
        var rejected = 0;
        await withHeaders.SampleAsync(async attempt =>
        {
            var before = await StoredAsync(own, otherProject);
            using var message = new HttpRequestMessage(attempt.Method, attempt.Path);
            message.Headers.TryAddWithoutValidation("Authorization", attempt.Authorization ?? $"Bearer {App.AdminKey}");
            foreach (var (name, value) in attempt.Headers ?? (IDictionary<string, string>)new Dictionary<string, string>()) message.Headers.TryAddWithoutValidation(name, value);
            if (attempt.Method != HttpMethod.Get) message.Content = new StringContent(attempt.Body, Encoding.UTF8, "application/json");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var response = await http.SendAsync(message);
            var elapsed = clock.Elapsed.TotalMilliseconds;
            var type = response.Content.Headers.ContentType?.MediaType;
            var what = $"{attempt.Method} {attempt.Path[..Math.Min(attempt.Path.Length, 200)]} body {attempt.Body[..Math.Min(attempt.Body.Length, 300)]} -> {(int)response.StatusCode} {type}";
            lock (counts)
            {
                counts[attempt.Surface] = counts.GetValueOrDefault(attempt.Surface) + 1;
                slowest.Add((elapsed, what[..Math.Min(what.Length, 160)]));
            }

            ((int)response.StatusCode).ShouldBeLessThan(500, what);
            if ((int)response.StatusCode < 400) return;
            rejected++;
            var expected = attempt.Surface switch
            {
                "connect" when attempt.Method == HttpMethod.Get || response.StatusCode != HttpStatusCode.MethodNotAllowed => type is "text/html" or "application/problem+json",
                "mcp" => type is "application/json" or "application/problem+json" or "text/event-stream",
                _ => type == "application/problem+json",
            };
            expected.ShouldBeTrue(what);
            (await StoredAsync(own, otherProject)).ShouldBe(before, $"a refused request stored something: {what}");
        }, iter: int.TryParse(Environment.GetEnvironmentVariable("EDTEST_FUZZ_ITER"), out var iter) ? iter : 10_000, threads: 1, seed: Environment.GetEnvironmentVariable("EDTEST_FUZZ_SEED"));

        await _connection!.DisposeAsync();
        output.WriteLine($"{counts.Values.Sum()} requests ({string.Join(", ", counts.Select(c => $"{c.Key} {c.Value}"))}); {rejected} refused, none stored anything, no 5xx");
        output.WriteLine($"over 1 s: {slowest.Count(s => s.Ms > 1000)}, total in requests {slowest.Sum(s => s.Ms) / 1000:F0} s");
        output.WriteLine($"slowest: {string.Join(" | ", slowest.OrderByDescending(s => s.Ms).Take(5).Select(s => $"{s.Ms:F0} ms {s.What}"))}");
        if (Environment.GetEnvironmentVariable("EDTEST_FUZZ_ITER") is null) counts.Values.Sum().ShouldBeGreaterThanOrEqualTo(10_000);
    }

    private sealed record Attempt(string Surface, HttpMethod Method, string Path, string Body, IDictionary<string, string>? Headers = null, string? Authorization = null)
    {
        public override string ToString() => $"{Method} {Path[..Math.Min(Path.Length, 120)]}";
    }

    /// <summary>What this test's projects hold: their events, stashes included, and the deliveries kept for its source.
    /// What the service records on its own in the background (a run's progress and end, a schedule armed, a first run
    /// started by the scheduler: channel <c>system</c>) is not the checked request's doing, so it is left out; a refused
    /// request that recorded anything would still show, since every request's events carry its own channel.</summary>
    private NpgsqlConnection? _connection;

    private async Task<(long Events, long Deliveries)> StoredAsync(string source, string otherProject)
    {
        if (_connection is null)
        {
            _connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
            await _connection.OpenAsync();
        }

        var connection = _connection;
        await using var command = new NpgsqlCommand($"""
            SELECT (SELECT count(*) FROM {App.Schema}.mt_events WHERE tenant_id = ANY(@tenants)
                       AND coalesce(headers->>'created_via', '') <> 'system'),
                   (SELECT count(*) FROM {App.Schema}.mt_doc_webhookdelivery WHERE id LIKE @deliveries)
            """, connection);
        command.Parameters.AddWithValue("tenants", new[] { ProjectId, otherProject });
        command.Parameters.AddWithValue("deliveries", $"{Guid.Parse(source):N}:%");
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }
}
