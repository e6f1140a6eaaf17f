using System.Net;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Catalogue;

public sealed class when_reading_the_wizard(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task lists_only_the_source_types_that_work_with_their_forms()
    {
        var catalogue = (await Api.GetAsync($"{Sources}wizard/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsObject();

        catalogue.Select(kv => kv.Key).ShouldBe(["Postgres", "Stripe"]);
        var postgres = catalogue["Postgres"]!;
        postgres["docsUrl"]!.GetValue<string>().ShouldStartWith("https://");
        postgres["caption"]!.GetValue<string>().ShouldNotBeEmpty();
        postgres["capabilities"]!["cdc"]!.GetValue<bool>().ShouldBeTrue();
        postgres["capabilities"]!["directQuery"]!.GetValue<bool>().ShouldBeTrue();
        postgres["supportsColumnSelection"]!.GetValue<bool>().ShouldBeTrue();
        postgres["tables"]!.AsArray().ShouldBeEmpty();
        var fields = postgres["fields"]!.AsArray();
        fields.Select(f => f!["name"]!.GetValue<string>()).ShouldBe(["connection_string", "host", "port", "database", "user", "password", "schema", "ssh_tunnel"]);
        fields.Where(f => f!["secret"]?.GetValue<bool>() == true).Select(f => f!["name"]!.GetValue<string>()).ShouldBe(["connection_string", "password"]);
        fields.Single(f => f!["name"]!.GetValue<string>() == "port")!["type"]!.GetValue<string>().ShouldBe("number");
        fields.Single(f => f!["name"]!.GetValue<string>() == "ssh_tunnel")!["type"]!.GetValue<string>().ShouldBe("ssh-tunnel");

        var stripe = catalogue["Stripe"]!;
        var authMethod = stripe["fields"]!.AsArray().Single(f => f!["name"]!.GetValue<string>() == "auth_method")!;
        authMethod["type"]!.GetValue<string>().ShouldBe("select");
        var keyField = authMethod["options"]![0]!["fields"]![0]!;
        keyField["name"]!.GetValue<string>().ShouldBe("stripe_secret_key");
        keyField["secret"]!.GetValue<bool>().ShouldBeTrue();
        stripe["capabilities"]!["webhooks"]!.GetValue<bool>().ShouldBeTrue();
        var tables = stripe["tables"]!.AsArray();
        tables.Count.ShouldBe(42);
        var charge = tables.Single(t => t!["name"]!.GetValue<string>() == "Charge")!;
        charge["sync_methods"]!.AsArray().Select(m => m!.GetValue<string>()).ShouldBe(["Webhook", "Append only", "Full refresh"]);
        charge["incremental_fields"]!.AsArray().Select(m => m!.GetValue<string>()).ShouldBe(["created_at"]);
        tables.Single(t => t!["name"]!.GetValue<string>() == "Discount")!["sync_methods"]!.AsArray().Select(m => m!.GetValue<string>()).ShouldBe(["Webhook only"]);
        tables.Single(t => t!["name"]!.GetValue<string>() == "SubscriptionItem")!["sync_methods"]!.AsArray().Select(m => m!.GetValue<string>())
            .ShouldBe(["Append only", "Full refresh"]);
    }

    [Fact]
    public async Task filters_by_source_type_and_names_unknown_ones()
    {
        (await Api.GetAsync($"{Sources}wizard/?source_type=Stripe")).Json.AsObject().Select(kv => kv.Key).ShouldBe(["Stripe"]);
        (await Api.GetAsync($"{Sources}wizard/?source_type=Stripe,Postgres")).Json.AsObject().Count.ShouldBe(2);
        (await Api.GetAsync($"{Sources}wizard/?source_type=Stripe,Zendesk,Hubspot")).ShouldBeProblem(HttpStatusCode.BadRequest,
            "Unknown source_type(s): Hubspot, Zendesk. Omit source_type to list every available type.", "source_type");
    }
}
