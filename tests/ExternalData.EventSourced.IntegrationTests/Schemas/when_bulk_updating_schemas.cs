using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Schemas;

public sealed class when_bulk_updating_schemas(AppFixture app) : IntegrationContext(app)
{
    private async Task<(string SourceId, Dictionary<string, string> SchemaIds)> GivenSourceAsync()
    {
        var source = await CreateSourceAsync();
        return (source["id"]!.GetValue<string>(),
            source["schemas"]!.AsArray().ToDictionary(s => s!["name"]!.GetValue<string>(), s => s!["id"]!.GetValue<string>()));
    }

    private string BulkUrl(string id) => $"{SourceUrl(id)}bulk_update_schemas/";

    private static JsonObject Batch(params JsonObject[] entries) => new() { ["schemas"] = new JsonArray(entries.Select(e => (JsonNode?)e).ToArray()) };

    [Fact]
    public async Task applies_every_entry_in_one_event_and_answers_the_updated_schemas()
    {
        var (id, schemas) = await GivenSourceAsync();

        var response = await Api.PatchAsync(BulkUrl(id), Batch(
            new JsonObject
            {
                ["id"] = schemas["customers"], ["should_sync"] = true, ["sync_type"] = "append", ["incremental_field"] = "created_at",
                ["incremental_field_type"] = "timestamp", ["sync_frequency"] = "1hour", ["sync_time_of_day"] = "02:30:00",
                ["enabled_columns"] = new JsonArray("id", "email"),
            },
            new JsonObject { ["id"] = schemas["orders"], ["should_sync"] = false },
            new JsonObject { ["id"] = schemas["events"], ["should_sync"] = true, ["sync_type"] = "full_refresh" }));

        var updated = response.ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray();
        updated.Select(s => s!["name"]!.GetValue<string>()).ShouldBe(["customers", "orders", "events"]);
        var customers = updated[0]!;
        customers["sync_type"]!.GetValue<string>().ShouldBe("append");
        customers["sync_frequency"]!.GetValue<string>().ShouldBe("1hour");
        customers["sync_time_of_day"]!.GetValue<string>().ShouldBe("02:30:00");
        customers["enabled_columns"]!.AsArray().Select(c => c!.GetValue<string>()).ShouldBe(["id", "email"]);

        var source = (await Api.GetAsync(SourceUrl(id))).Json;
        source["version"]!.GetValue<int>().ShouldBe(CreatedVersion + 1);
        source["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "orders")!["should_sync"]!.GetValue<bool>().ShouldBeFalse();
        source["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "events")!["sync_type"]!.GetValue<string>().ShouldBe("full_refresh");
        (await EventCountAsync(id)).ShouldBe(CreatedVersion + 1);
    }

    [Fact]
    public async Task an_explicit_null_clears_and_an_absent_key_keeps()
    {
        var (id, schemas) = await GivenSourceAsync();
        await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = schemas["orders"], ["sync_time_of_day"] = "01:00:00" }));

        var orders = (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = schemas["orders"], ["sync_time_of_day"] = null })))
            .ShouldHaveStatus(HttpStatusCode.OK).Json[0]!;

        orders["sync_time_of_day"].ShouldBeNull();
        orders["sync_type"]!.GetValue<string>().ShouldBe("incremental");
        orders["incremental_field"]!.GetValue<string>().ShouldBe("updated_at");
    }

    [Fact]
    public async Task one_bad_entry_refuses_the_whole_batch_naming_each_failure()
    {
        var (id, schemas) = await GivenSourceAsync();
        var before = (await Api.GetAsync(SourceUrl(id))).Text;

        var response = await Api.PatchAsync(BulkUrl(id), Batch(
            new JsonObject { ["id"] = schemas["customers"], ["should_sync"] = true, ["sync_type"] = "full_refresh" },
            new JsonObject { ["id"] = schemas["events"], ["should_sync"] = true },
            new JsonObject { ["id"] = schemas["orders"], ["sync_frequency"] = "1min" }));

        response.ShouldBeProblem(HttpStatusCode.BadRequest,
            "These schemas in the batch could not be saved: events (Sync type must be set up first before enabling schema); " +
            "orders (A 1-minute sync frequency is only available for CDC schemas. The fastest frequency for other sync types is 5 minutes.). " +
            "No schema in the batch was changed.", "schemas");
        response.Json["errors"]!.AsArray().Select(e => e!["schema"]!.GetValue<string>()).ShouldBe(["events", "orders"]);
        (await Api.GetAsync(SourceUrl(id))).Text.ShouldBe(before);
        (await EventCountAsync(id)).ShouldBe(CreatedVersion);
    }

    [Theory]
    [InlineData("{\"sync_type\":\"teleport\"}", "\"teleport\" is not a valid choice for sync_type")]
    [InlineData("{\"sync_type\":\"cdc\"}", "CDC is not enabled for this source")]
    [InlineData("{\"sync_type\":\"incremental\",\"incremental_field\":null}", "Incremental schemas given do not have an incremental field set")]
    [InlineData("{\"incremental_field\":\"ghost\"}", "unknown incremental field 'ghost'")]
    [InlineData("{\"incremental_field_type\":\"uuid\"}", "\"uuid\" is not a valid choice for incremental_field_type")]
    [InlineData("{\"sync_time_of_day\":\"7pm\"}", "Invalid sync time of day")]
    [InlineData("{\"sync_frequency\":\"2hour\"}", "\"2hour\" is not a valid choice for sync_frequency")]
    [InlineData("{\"enabled_columns\":[\"id\",\"ghost\"]}", "Unknown columns in enabled_columns: ['ghost']. Run `Pull new schemas` to refresh available columns.")]
    [InlineData("{\"primary_key_columns\":[\"nope\"]}", "Unknown columns in primary_key_columns: ['nope']. Run `Pull new schemas` to refresh available columns.")]
    [InlineData("{\"incremental_field_lookback_seconds\":-5}", "incremental_field_lookback_seconds must be an integer between 0 and 5184000 (60 days) for schema 'orders'.")]
    [InlineData("{\"should_sync\":\"yes\"}", "should_sync must be true or false")]
    [InlineData("{\"row_filters\":[{\"column\":\"total\",\"operator\":\"LIKE\",\"value\":1}]}", "invalid row filter: operator must be one of >, >=, <, <=, =, !=, IN, NOT IN")]
    public async Task each_rule_names_the_schema_and_the_reason(string entryJson, string reason)
    {
        var (id, schemas) = await GivenSourceAsync();
        var entry = JsonNode.Parse(entryJson)!.AsObject();
        entry["id"] = schemas["orders"];

        (await Api.PatchAsync(BulkUrl(id), Batch(entry))).ShouldBeProblem(HttpStatusCode.BadRequest,
            $"These schemas in the batch could not be saved: orders ({reason}). No schema in the batch was changed.", "schemas");
        (await EventCountAsync(id)).ShouldBe(CreatedVersion);
    }

    [Fact]
    public async Task ids_must_be_unique_known_and_present()
    {
        var (id, schemas) = await GivenSourceAsync();

        (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = schemas["orders"] }, new JsonObject { ["id"] = schemas["orders"] })))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Schema updates must contain unique ids", "schemas");
        (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = Guid.NewGuid().ToString() })))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "One or more schemas could not be found for this source", "schemas");
        (await Api.PatchAsync(BulkUrl(id), new JsonObject { ["schemas"] = new JsonArray() }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "This list may not be empty.", "schemas");
        (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["should_sync"] = true })))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Each schema update must be an object with an 'id' that is a UUID.");
        (await Api.PatchAsync($"{SourceUrl(Guid.NewGuid().ToString())}bulk_update_schemas/", Batch(new JsonObject { ["id"] = schemas["orders"] })))
            .ShouldHaveStatus(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task a_webhook_only_stripe_table_only_takes_webhook_sync()
    {
        var body = new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = FakeStripeServer.FullKey },
                ["schemas"] = new JsonArray(new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
            },
        };
        var source = (await Api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json;
        var discount = source["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "Discount")!["id"]!.GetValue<string>();
        var balance = source["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "BalanceTransaction")!["id"]!.GetValue<string>();
        var id = source["id"]!.GetValue<string>();

        (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = discount, ["should_sync"] = true, ["sync_type"] = "full_refresh" })))
            .ShouldBeProblem(HttpStatusCode.BadRequest,
                "These schemas in the batch could not be saved: Discount (Discount can only be synced via webhooks — pick the Webhook sync method.). No schema in the batch was changed.");
        (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = balance, ["should_sync"] = true, ["sync_type"] = "incremental", ["incremental_field"] = "created", ["incremental_field_type"] = "integer" })))
            .Json["detail"]!.GetValue<string>().ShouldContain("BalanceTransaction (BalanceTransaction does not support incremental sync)");
        (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = discount, ["should_sync"] = true, ["sync_type"] = "webhook" })))
            .ShouldHaveStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task if_match_is_enforced()
    {
        var (id, schemas) = await GivenSourceAsync();
        var stale = new Dictionary<string, string> { ["If-Match"] = "70" };

        (await Api.PatchAsync(BulkUrl(id), Batch(new JsonObject { ["id"] = schemas["orders"], ["should_sync"] = false }), stale))
            .ShouldBeProblem(HttpStatusCode.Conflict, $"The source is at version {CreatedVersion}, not 70. Fetch it again and re-apply your change.");
    }
}
