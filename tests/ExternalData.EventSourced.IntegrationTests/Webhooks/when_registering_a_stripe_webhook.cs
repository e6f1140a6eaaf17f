using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Webhooks;

/// <summary>Registration through Stripe.net against a Stripe-protocol server (ref §5.9, §12.2), idempotent [beyond],
/// with the switch to real-time sync on success and the polling defaults kept on failure.</summary>
public sealed class when_registering_a_stripe_webhook(AppFixture app) : StripeWebhookContext(app)
{
    [Fact]
    public async Task success_registers_one_endpoint_seals_its_secret_and_switches_the_tables_to_webhooks()
    {
        var id = await StripeSourceAsync();
        var result = await CreateWebhookAsync(id);
        result["success"]!.GetValue<bool>().ShouldBeTrue(result.ToJsonString());
        result["webhook_url"]!.GetValue<string>().ShouldEndWith(InboundPath(id));
        result["error"].ShouldBeNull();
        result["pending_inputs"]!.AsArray().ShouldBeEmpty();

        var endpoint = EndpointsOf(id).ShouldHaveSingleItem();
        endpoint.EnabledEvents.ShouldContain("customer.created");
        endpoint.EnabledEvents.ShouldContain("charge.succeeded");
        endpoint.EnabledEvents.ShouldContain("customer.discount.created");
        endpoint.EnabledEvents.ShouldNotContain("payout.paid");

        var schemas = await SchemasAsync(id);
        foreach (var name in new[] { "Customer", "Charge", "Discount" })
        {
            schemas[name]["sync_type"]!.GetValue<string>().ShouldBe("webhook", name);
            schemas[name]["should_sync"]!.GetValue<bool>().ShouldBeTrue(name);
        }

        schemas["Invoice"]["should_sync"]!.GetValue<bool>().ShouldBeFalse("a disabled polling table stays as it was");
        var webhook = (await Api.GetAsync(SourceUrl(id))).Json["webhook"]!;
        webhook["registered"]!.GetValue<bool>().ShouldBeTrue();
        webhook["url"]!.GetValue<string>().ShouldEndWith(InboundPath(id));
        webhook["last_error"].ShouldBeNull();

        var registered = (await Api.GetAsync($"{SourceUrl(id)}history/?type=webhook_registered")).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
        registered["data"]!["signing_secret"]!.GetValue<string>().ShouldBe("[secret]");
        registered["data"]!["provider_endpoint_id"]!.GetValue<string>().ShouldBe(endpoint.Id);
        await AssertNowhereStoredAsync(endpoint.Secret);
        (await Api.GetAsync(SourceUrl(id))).Text.ShouldNotContain(endpoint.Secret);
    }

    [Fact]
    public async Task calling_it_twice_leaves_exactly_one_endpoint_and_keeps_its_secret()
    {
        var id = await StripeSourceAsync();
        await CreateWebhookAsync(id);
        var first = EndpointsOf(id).ShouldHaveSingleItem();
        (await CreateWebhookAsync(id))["success"]!.GetValue<bool>().ShouldBeTrue();
        EndpointsOf(id).ShouldHaveSingleItem().Id.ShouldBe(first.Id);
        var kept = (await Api.GetAsync($"{SourceUrl(id)}history/?type=webhook_registered")).Json["results"]!.AsArray()[1]!;
        kept["data"]!["reused"]!.GetValue<bool>().ShouldBeTrue();
        kept["data"]!["signing_secret"].ShouldBeNull();

        // The kept secret still verifies deliveries.
        var body = FakeStripeServer.Event($"evt_{Guid.NewGuid():N}", "customer.created", "customer");
        (await DeliverAsync(id, body, FakeStripeServer.Sign(body, first.Secret))).ShouldHaveStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task an_endpoint_at_stripe_whose_secret_we_do_not_hold_is_replaced()
    {
        var id = await StripeSourceAsync();
        var url = $"http://localhost{InboundPath(id)}";
        var orphan = App.Stripe.AddEndpoint(url, "customer.created");
        var extra = App.Stripe.AddEndpoint(url, "charge.succeeded");
        // Enough other endpoints that ours are not on the first page: the client must follow has_more.
        for (var i = 0; i < FakeStripeServer.PageSize * 2; i++) App.Stripe.AddEndpoint($"https://elsewhere.example/{Guid.NewGuid():N}", "customer.created");

        (await CreateWebhookAsync(id))["success"]!.GetValue<bool>().ShouldBeTrue();
        var endpoint = EndpointsOf(id).ShouldHaveSingleItem();
        endpoint.Id.ShouldNotBeOneOf(orphan.Id, extra.Id);
        var registered = (await Api.GetAsync($"{SourceUrl(id)}history/?type=webhook_registered")).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
        registered["data"]!["replaced_endpoint_ids"]!.AsArray().Select(e => e!.GetValue<string>()).Order().ShouldBe(new[] { orphan.Id, extra.Id }.Order());
    }

    [Fact]
    public async Task a_key_without_the_webhook_permission_keeps_polling_and_records_the_failure()
    {
        var id = await StripeSourceAsync(FakeStripeServer.NoWebhooksKey);
        var result = await CreateWebhookAsync(id);
        result["success"]!.GetValue<bool>().ShouldBeFalse();
        result["error"]!.GetValue<string>().ShouldBe(
            "Your Stripe API key doesn't have permission to create webhooks. Please add the 'Write' permission for 'Webhook endpoints' to your API key, or create the webhook manually.");
        EndpointsOf(id).ShouldBeEmpty();
        var schemas = await SchemasAsync(id);
        schemas["Customer"]["sync_type"]!.GetValue<string>().ShouldBe("full_refresh");
        schemas["Discount"]["should_sync"]!.GetValue<bool>().ShouldBeFalse();
        (await EventTypesAsync(id)).ShouldContain("webhook_registration_failed");
        var webhook = (await Api.GetAsync(SourceUrl(id))).Json["webhook"]!;
        webhook["registered"]!.GetValue<bool>().ShouldBeFalse();
        webhook["last_error"]!.GetValue<string>().ShouldStartWith("Your Stripe API key doesn't have permission");
    }

    [Fact]
    public async Task delete_is_refused_while_tables_use_it_then_removes_the_endpoint()
    {
        var id = await StripeSourceAsync();
        await CreateWebhookAsync(id);
        (await Api.PostAsync($"{SourceUrl(id)}delete_webhook/", new JsonObject())).ShouldBeProblem(HttpStatusCode.BadRequest,
            "Cannot delete webhook while tables are using webhook sync: Charge, Customer, Discount. Switch them to full refresh, incremental, or disable syncing first.");
        EndpointsOf(id).Count.ShouldBe(1);

        var schemas = await SchemasAsync(id);
        (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
        {
            ["schemas"] = new JsonArray(
                new JsonObject { ["id"] = schemas["Customer"]["id"]!.GetValue<string>(), ["sync_type"] = "full_refresh" },
                new JsonObject { ["id"] = schemas["Charge"]["id"]!.GetValue<string>(), ["should_sync"] = false },
                new JsonObject { ["id"] = schemas["Discount"]["id"]!.GetValue<string>(), ["should_sync"] = false }),
        })).ShouldHaveStatus(HttpStatusCode.OK);

        var deleted = (await Api.PostAsync($"{SourceUrl(id)}delete_webhook/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK).Json;
        deleted.ToJsonString().ShouldBe("""{"success":true,"external_deleted":true,"error":null}""");
        EndpointsOf(id).ShouldBeEmpty();
        (await Api.GetAsync(SourceUrl(id))).Json["webhook"].ShouldBeNull();
        (await EventTypesAsync(id)).ShouldContain("webhook_deleted");
    }

    [Fact]
    public async Task webhook_info_reads_stripes_side_live()
    {
        var id = await StripeSourceAsync();
        (await Api.GetAsync($"{SourceUrl(id)}webhook_info/")).Json.ToJsonString().ShouldBe("""{"supports_webhooks":true,"exists":false}""");
        await CreateWebhookAsync(id);
        var info = (await Api.GetAsync($"{SourceUrl(id)}webhook_info/")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        info["exists"]!.GetValue<bool>().ShouldBeTrue();
        info["external_status"]!["exists"]!.GetValue<bool>().ShouldBeTrue();
        info["external_status"]!["status"]!.GetValue<string>().ShouldBe("enabled");
        info["missing_events"]!.AsArray().ShouldBeEmpty();
        info["schema_mapping"]!["customer"]!.GetValue<string>().ShouldBe((await SchemasAsync(id))["Customer"]["id"]!.GetValue<string>());

        var postgres = (await CreateSourceAsync())["id"]!.GetValue<string>();
        (await Api.GetAsync($"{SourceUrl(postgres)}webhook_info/")).Json.ToJsonString()
            .ShouldBe("""{"supports_webhooks":false,"exists":false,"webhook_url":null,"schema_mapping":{},"external_status":null}""");
    }

    [Fact]
    public async Task setup_registers_the_webhook_and_switches_the_tables()
    {
        var response = await Api.PostAsync($"{Sources}setup/", new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject { ["stripe_secret_key"] = FakeStripeServer.FullKey },
            ["tables"] = new JsonArray("Customer", "Charge"),
        });
        var setup = response.ShouldHaveStatus(HttpStatusCode.Created).Json;
        var id = setup["id"]!.GetValue<string>();
        setup["webhook"]!["success"]!.GetValue<bool>().ShouldBeTrue(setup["webhook"]!.ToJsonString());
        setup["webhook"]!["webhook_url"]!.GetValue<string>().ShouldEndWith(InboundPath(id));
        EndpointsOf(id).Count.ShouldBe(1);
        var answered = setup["source"]!["schemas"]!.AsArray().ToDictionary(s => s!["name"]!.GetValue<string>(), s => s!);
        answered["Customer"]["sync_type"]!.GetValue<string>().ShouldBe("webhook");
        answered["Discount"]["should_sync"]!.GetValue<bool>().ShouldBeTrue();
        var read = await SchemasAsync(id);
        read["Customer"]["sync_type"]!.GetValue<string>().ShouldBe("webhook");
        read["Discount"]["sync_type"]!.GetValue<string>().ShouldBe("webhook");
        read["Invoice"]["should_sync"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task setup_with_a_key_that_cannot_register_keeps_polling_defaults_and_says_why()
    {
        var setup = (await Api.PostAsync($"{Sources}setup/", new JsonObject
        {
            ["source_type"] = "Stripe", ["payload"] = new JsonObject { ["stripe_secret_key"] = FakeStripeServer.NoWebhooksKey }, ["tables"] = new JsonArray("Customer"),
        })).ShouldHaveStatus(HttpStatusCode.Created).Json;
        setup["webhook"]!["success"]!.GetValue<bool>().ShouldBeFalse();
        setup["webhook"]!["error"]!.GetValue<string>().ShouldStartWith("Your Stripe API key doesn't have permission to create webhooks.");
        var read = await SchemasAsync(setup["id"]!.GetValue<string>());
        read["Customer"]["sync_type"]!.GetValue<string>().ShouldNotBe("webhook");
        read["Discount"]["should_sync"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task deleting_the_source_deletes_its_endpoint_before_the_key_is_shredded()
    {
        var id = await StripeSourceAsync();
        await CreateWebhookAsync(id);
        (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);
        for (var i = 0; i < 300 && !(await EventTypesAsync(id)).Contains("source_secrets_shredded"); i++) await Task.Delay(100);
        (await EventTypesAsync(id)).SkipWhile(t => t != "source_deleted").ShouldBe(["source_deleted", "webhook_deleted", "source_secrets_shredded"]);
        EndpointsOf(id).ShouldBeEmpty();
    }
}
