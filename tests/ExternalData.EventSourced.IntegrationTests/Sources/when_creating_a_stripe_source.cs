using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

public sealed class when_creating_a_stripe_source(AppFixture app) : IntegrationContext(app)
{
    private static JsonObject StripeBody(string key, JsonArray schemas, string? prefix = null) => new()
    {
        ["source_type"] = "Stripe",
        ["prefix"] = prefix,
        ["payload"] = new JsonObject
        {
            ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = key },
            ["schemas"] = schemas,
        },
    };

    private static JsonArray ChargeAppend() =>
    [
        new JsonObject
        {
            ["name"] = "Charge", ["should_sync"] = true, ["sync_type"] = "append", ["incremental_field"] = "created", ["incremental_field_type"] = "integer",
        },
        new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" },
    ];

    [Fact]
    public async Task is_created_with_every_stripe_table_and_the_key_hidden()
    {
        var source = (await Api.PostAsync(Sources, StripeBody(FakeStripeServer.FullKey, ChargeAppend()))).ShouldHaveStatus(HttpStatusCode.Created).Json;

        source["source_type"]!.GetValue<string>().ShouldBe("Stripe");
        source["job_inputs"]!.ToJsonString().ShouldBe("{\"auth_method\":{\"selection\":\"api_key\"}}");
        source["supports_webhooks"]!.GetValue<bool>().ShouldBeTrue();
        source["supports_column_selection"]!.GetValue<bool>().ShouldBeFalse();
        source.ToJsonString().ShouldNotContain(FakeStripeServer.FullKey);
        var schemas = source["schemas"]!.AsArray();
        schemas.Count.ShouldBe(42);
        var charge = schemas.Single(s => s!["name"]!.GetValue<string>() == "Charge")!;
        charge["sync_type"]!.GetValue<string>().ShouldBe("append");
        charge["primary_key_columns"]!.AsArray().Select(k => k!.GetValue<string>()).ShouldBe(["id"]);
    }

    [Fact]
    public async Task a_stripe_source_and_a_postgres_source_may_share_a_prefix()
    {
        await CreateSourceAsync(prefix: "prod");
        (await Api.PostAsync(Sources, StripeBody(FakeStripeServer.FullKey, ChargeAppend(), prefix: "prod"))).ShouldHaveStatus(HttpStatusCode.Created);
        (await Api.PostAsync(Sources, StripeBody(FakeStripeServer.FullKey, ChargeAppend(), prefix: "prod")))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Prefix already exists", "prefix");
    }

    [Fact]
    public async Task an_unknown_key_is_refused_and_nothing_is_stored()
    {
        (await Api.PostAsync(Sources, StripeBody("rk_test_unknown_0000", ChargeAppend()))).ShouldBeProblem(HttpStatusCode.BadRequest,
            "Stripe rejected the API key. Check that it is a live or test secret key or restricted key, and that it has not been rolled.");
        (await EventCountAsync()).ShouldBe(0);
    }

    [Fact]
    public async Task unsupported_sync_methods_are_refused_at_creation()
    {
        var discount = new JsonArray(new JsonObject { ["name"] = "Discount", ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        (await Api.PostAsync(Sources, StripeBody(FakeStripeServer.FullKey, discount)))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Discount can only be synced via webhooks — pick the Webhook sync method.");

        var incremental = new JsonArray(new JsonObject
            { ["name"] = "BalanceTransaction", ["should_sync"] = true, ["sync_type"] = "incremental", ["incremental_field"] = "created", ["incremental_field_type"] = "integer" });
        // Incremental goes beyond PostHog where Stripe's events carry a table's updates; balance transactions have none.
        (await Api.PostAsync(Sources, StripeBody(FakeStripeServer.FullKey, incremental)))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "BalanceTransaction does not support incremental sync.");
    }

    [Fact]
    public async Task changing_the_connected_account_needs_the_key_again()
    {
        var id = (await Api.PostAsync(Sources, StripeBody(FakeStripeServer.FullKey, ChargeAppend()))).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["stripe_account_id"] = "acct_other" } }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Changing the connection host requires re-entering your credentials.");
        // Same selection without a key keeps the stored key (checked live again, so it must still be the real one).
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["auth_method"] = new JsonObject { ["selection"] = "api_key" } } }))
            .ShouldHaveStatus(HttpStatusCode.OK);
        (await Api.PatchAsync(SourceUrl(id), new JsonObject
            {
                ["job_inputs"] = new JsonObject
                {
                    ["stripe_account_id"] = "acct_other",
                    ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = FakeStripeServer.FullKey },
                },
            }))
            .ShouldHaveStatus(HttpStatusCode.OK).Json["job_inputs"]!["stripe_account_id"]!.GetValue<string>().ShouldBe("acct_other");
    }
}
