using System.Net;
using System.Text.Json.Nodes;
using CsCheck;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Security;

/// <summary>
/// Property: whatever JSON a caller sends to the write endpoints (wrong types, nesting, nulls, junk), the answer
/// is a success or a 4xx problem, never a 500.
/// </summary>
public sealed class no_input_causes_a_server_error(AppFixture app) : IntegrationContext(app)
{
    private static readonly Gen<JsonNode?> Scalar = Gen.OneOf<JsonNode?>(
        Gen.Const((JsonNode?)null), Gen.Bool.Select(b => (JsonNode?)b), Gen.Int.Select(i => (JsonNode?)i), Gen.Double.Select(d => (JsonNode?)(double.IsFinite(d) ? d : 0)),
        Gen.String.Select(s => (JsonNode?)s), Gen.OneOf("", "Postgres", "Stripe", "warehouse", "direct", "********", "127.0.0.1", "incremental").Select(s => (JsonNode?)s));

    private static readonly Gen<JsonNode?> Value = Gen.OneOf(
        Scalar,
        Scalar.Array[0, 3].Select(a => (JsonNode?)new JsonArray(a.Select(n => n?.DeepClone()).ToArray())),
        Gen.Select(Gen.OneOf("host", "port", "password", "name", "id", "selection", "secretRef", "enabled", "credential_id"), Scalar, (k, v) => (JsonNode?)new JsonObject { [k] = v?.DeepClone() }));

    private static readonly string[] Keys =
    [
        "source_type", "payload", "prefix", "description", "access_method", "created_via", "direct_query_enabled", "job_inputs", "schemas", "host", "port",
        "database", "user", "password", "schema", "ssh_tunnel", "auth_method", "stripe_secret_key", "should_sync", "sync_type", "id", "credential_id", "tables",
        "cdc_enabled", "cdc_management_mode", "cdc_slot_name", "cdc_publication_name", "cdc_auto_drop_slot", "cdc_lag_warning_threshold_mb", "cdc_lag_critical_threshold_mb",
    ];

    private static readonly Gen<JsonObject> Object = Gen.Select(Gen.Int[0, Keys.Length - 1], Value, (k, v) => (Keys[k], v)).Array[0, 6]
        .Select(pairs =>
        {
            var body = new JsonObject();
            foreach (var (key, value) in pairs) body[key] = value?.DeepClone();
            return body;
        });

    // Mostly objects, sometimes any other JSON value as the whole body (a `null` body was once a 500), or nothing.
    private static readonly Gen<string> Body = Gen.Frequency(
        (8, Object.Select(o => o.ToJsonString())),
        (2, Value.Select(v => v?.ToJsonString() ?? "null")),
        (1, Gen.OneOf("", " ", "null", "[]", "{", "}", "nul")));

    [Fact]
    public async Task random_bodies_get_a_problem_or_success_never_a_500()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var connect = new Uri((await Api.GetAsync($"{Sources}connect_link/?source_type=Postgres")).Json["connect_url"]!.GetValue<string>()).AbsolutePath;
        var targets = new[]
        {
            (HttpMethod.Post, Sources), (HttpMethod.Patch, SourceUrl(id)), (HttpMethod.Patch, $"{SourceUrl(id)}bulk_update_schemas/"),
            (HttpMethod.Post, $"{Sources}database_schema/"), (HttpMethod.Post, $"{Sources}source_prefix/"), (HttpMethod.Post, $"{SourceUrl(id)}refresh_schemas/"),
            (HttpMethod.Post, $"{Sources}store_credentials/"), (HttpMethod.Post, $"{Sources}setup/"), (HttpMethod.Post, $"{connect}/credentials"),
            (HttpMethod.Post, "/connect/not-a-token/credentials"),
            (HttpMethod.Post, $"{Sources}check_cdc_prerequisites/"), (HttpMethod.Post, $"{SourceUrl(id)}check_cdc_prerequisites_for_source/"),
            (HttpMethod.Post, $"{SourceUrl(id)}enable_cdc/"), (HttpMethod.Post, $"{SourceUrl(id)}update_cdc_settings/"), (HttpMethod.Post, $"{SourceUrl(id)}disable_cdc/"),
            (HttpMethod.Post, $"{SourceUrl(id)}create_webhook/"), (HttpMethod.Post, $"{SourceUrl(id)}delete_webhook/"),
            (HttpMethod.Post, $"/public/webhooks/dwh/{id}"), (HttpMethod.Post, "/public/webhooks/dwh/not-a-uuid"),
        };

        await Gen.Select(Gen.Int[0, targets.Length - 1], Body).SampleAsync(async (target, body) =>
        {
            var (method, url) = targets[target];
            var response = await Api.SendAsync(method, url, body);
            ((int)response.Status).ShouldBeLessThan(500, $"{method} {url} {body} -> {response.Text}");
            if ((int)response.Status >= 400) response.ContentType.ShouldBe("application/problem+json");
        }, iter: 400, threads: 1);
    }
}
