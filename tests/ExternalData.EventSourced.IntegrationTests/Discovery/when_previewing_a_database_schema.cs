using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Discovery;

public sealed class when_previewing_a_database_schema(AppFixture app) : IntegrationContext(app)
{
    private static readonly string[] PreviewFields =
    [
        "table", "label", "should_sync", "incremental_fields", "incremental_available", "append_available", "cdc_available", "xmin_available", "supports_webhooks",
        "webhook_only", "rows", "description", "available_columns", "detected_primary_keys", "permission_error", "rls_warning", "incremental_field",
        "sync_type", "should_sync_default",
    ];

    private JsonObject PostgresBody(string schema = "public")
    {
        var body = PostgresConfig(schema: schema);
        body["source_type"] = "Postgres";
        return body;
    }

    private static JsonNode Table(JsonNode preview, string name) => preview.AsArray().Single(t => t!["table"]!.GetValue<string>() == name)!;

    [Fact]
    public async Task postgres_answers_a_bare_array_with_exactly_posthogs_fields()
    {
        var preview = (await Api.PostAsync($"{Sources}database_schema/", PostgresBody())).ShouldHaveStatus(HttpStatusCode.OK).Json;

        preview.AsArray().Select(t => t!["table"]!.GetValue<string>()).ShouldBe(["big_orders", "customers", "events", "orders", "payroll", "tenant_notes"]);
        preview.AsArray().ShouldAllBe(t => t!.AsObject().Select(kv => kv.Key).SequenceEqual(PreviewFields));

        var orders = Table(preview, "orders");
        orders["should_sync"]!.GetValue<bool>().ShouldBeFalse();
        orders["sync_type"].ShouldBeNull();
        orders["incremental_available"]!.GetValue<bool>().ShouldBeTrue();
        orders["cdc_available"]!.GetValue<bool>().ShouldBeTrue();
        orders["xmin_available"]!.GetValue<bool>().ShouldBeTrue("a Postgres table with a primary key can sync by xmin");
        orders["rows"]!.GetValue<long>().ShouldBe(50);
        orders["description"]!.GetValue<string>().ShouldBe("Customer orders");
        orders["detected_primary_keys"]!.AsArray().Select(k => k!.GetValue<string>()).ShouldBe(["id"]);
        orders["incremental_field"]!.GetValue<string>().ShouldBe("updated_at");
        var candidates = orders["incremental_fields"]!.AsArray();
        candidates.Select(c => c!["field"]!.GetValue<string>()).ShouldBe(["updated_at", "created_at", "id", "total"]);
        candidates[0]!.AsObject().Select(kv => kv.Key).ShouldBe(["label", "type", "field", "field_type", "nullable", "is_indexed"]);
        candidates[0]!["is_indexed"]!.GetValue<bool>().ShouldBeTrue();
        candidates[1]!["is_indexed"]!.GetValue<bool>().ShouldBeFalse();
        candidates[0]!["field_type"]!.GetValue<string>().ShouldBe("timestamp");
        orders["available_columns"]![0]!.AsObject().Select(kv => kv.Key).ShouldBe(["field", "label", "type", "nullable"]);

        var events = Table(preview, "events");
        events["cdc_available"]!.GetValue<bool>().ShouldBeFalse();
        events["xmin_available"]!.GetValue<bool>().ShouldBeFalse("no primary key to merge on");
        events["detected_primary_keys"].ShouldBeNull();
        Table(preview, "big_orders")["detected_primary_keys"]!.AsArray().Select(k => k!.GetValue<string>()).ShouldBe(["id"]);
    }

    [Fact]
    public async Task a_table_the_user_cannot_read_and_one_with_row_security_are_flagged_not_fatal()
    {
        var preview = (await Api.PostAsync($"{Sources}database_schema/", PostgresBody())).ShouldHaveStatus(HttpStatusCode.OK).Json;

        Table(preview, "payroll")["permission_error"]!.GetValue<string>()
            .ShouldBe("The user 'source_reader' does not have SELECT permission on table 'public.payroll'. Grant it with: GRANT SELECT ON public.payroll TO source_reader;");
        Table(preview, "orders")["permission_error"].ShouldBeNull();
        Table(preview, "tenant_notes")["rls_warning"]!.GetValue<string>().ShouldContain("Row-level security is enabled on 'public.tenant_notes'");
        Table(preview, "orders")["rls_warning"].ShouldBeNull();
    }

    [Fact]
    public async Task stores_nothing()
    {
        (await Api.PostAsync($"{Sources}database_schema/", PostgresBody())).ShouldHaveStatus(HttpStatusCode.OK);
        (await EventCountAsync()).ShouldBe(0);
    }

    [Fact]
    public async Task a_missing_or_unknown_source_type_is_a_problem()
    {
        (await Api.PostAsync($"{Sources}database_schema/", PostgresConfig())).ShouldBeProblem(HttpStatusCode.BadRequest,
            "Missing required parameter: source_type", "source_type");
        var body = PostgresBody();
        body["source_type"] = "Oracle";
        (await Api.PostAsync($"{Sources}database_schema/", body)).ShouldBeProblem(HttpStatusCode.BadRequest, "Unknown source_type 'Oracle'", "source_type");
    }

    [Fact]
    public async Task config_and_credential_errors_are_posthogs_texts()
    {
        var missingHost = PostgresBody();
        missingHost.Remove("host");
        (await Api.PostAsync($"{Sources}database_schema/", missingHost)).ShouldBeProblem(HttpStatusCode.BadRequest,
            "Invalid source config: Required field 'host' is missing", "host");

        var wrongPassword = PostgresBody();
        wrongPassword["password"] = "nope";
        (await Api.PostAsync($"{Sources}database_schema/", wrongPassword)).ShouldBeProblem(HttpStatusCode.BadRequest,
            "The database rejected the username or password. Check the user and password, and that this user may log in from outside the database server.");
    }

    [Fact]
    public async Task stripe_probes_every_table_and_names_the_missing_permission()
    {
        var body = new JsonObject
        {
            ["source_type"] = "Stripe",
            ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = FakeStripeServer.NoChargesKey },
            ["stripe_account_id"] = "acct_connected",
        };

        var preview = (await Api.PostAsync($"{Sources}database_schema/", body)).ShouldHaveStatus(HttpStatusCode.OK).Json;

        preview.AsArray().Count.ShouldBe(42);
        preview.AsArray().ShouldAllBe(t => t!.AsObject().Select(kv => kv.Key).SequenceEqual(PreviewFields));
        var charge = Table(preview, "Charge");
        charge["permission_error"]!.GetValue<string>().ShouldBe(
            "Stripe credentials lack permissions for Charge. Give the restricted key the 'rak_charge_read' permission (Charges: Read).");
        charge["append_available"]!.GetValue<bool>().ShouldBeTrue();
        charge["incremental_available"]!.GetValue<bool>().ShouldBeTrue("beyond PostHog: Stripe's charge.updated and .deleted events carry its changes");
        Table(preview, "BalanceTransaction")["incremental_available"]!.GetValue<bool>().ShouldBeFalse("Stripe sends no events about balance transactions themselves");
        charge["supports_webhooks"]!.GetValue<bool>().ShouldBeTrue();
        charge["cdc_available"].ShouldBeNull();
        charge["xmin_available"].ShouldBeNull();
        charge["incremental_fields"]![0]!.ToJsonString().ShouldBe("{\"label\":\"created_at\",\"type\":\"datetime\",\"field\":\"created\",\"field_type\":\"integer\",\"nullable\":null,\"is_indexed\":null}");
        Table(preview, "Customer")["permission_error"].ShouldBeNull();
        Table(preview, "Discount")["webhook_only"]!.GetValue<bool>().ShouldBeTrue();
        Table(preview, "Discount")["append_available"]!.GetValue<bool>().ShouldBeFalse();
        Table(preview, "Event")["supports_webhooks"]!.GetValue<bool>().ShouldBeFalse();
        // The connected account travels as Stripe-Account on every call.
        App.Stripe.Requests.Where(r => r.Path == "/v1/customers").ShouldContain(r => r.Account == "acct_connected");
        preview.ToJsonString().ShouldNotContain(FakeStripeServer.NoChargesKey[^4..] + "'");
    }

    [Fact]
    public async Task stripe_rejects_an_unknown_key()
    {
        var body = new JsonObject { ["source_type"] = "Stripe", ["stripe_secret_key"] = "sk_test_unknown_9999" };

        (await Api.PostAsync($"{Sources}database_schema/", body)).ShouldBeProblem(HttpStatusCode.BadRequest,
            "Stripe rejected the API key. Check that it is a live or test secret key or restricted key, and that it has not been rolled.");
    }

    [Fact]
    public async Task stripe_without_a_key_is_an_invalid_config()
    {
        (await Api.PostAsync($"{Sources}database_schema/", new JsonObject { ["source_type"] = "Stripe" })).ShouldBeProblem(HttpStatusCode.BadRequest,
            "Invalid source config: Required field 'stripe_secret_key' is missing", "auth_method.stripe_secret_key");
    }
}
