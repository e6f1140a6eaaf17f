using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Cdc;

/// <summary>CDC's lifecycle on a real database (ref §10.3–10.5): what each call leaves in pg_replication_slots,
/// pg_publication and pg_publication_tables, and the events that record it.</summary>
public sealed class when_turning_cdc_on_and_off(AppFixture app) : IntegrationContext(app)
{
    private static JsonArray NothingEnabled() => [new JsonObject { ["name"] = "orders", ["should_sync"] = false }];

    private async Task<(CdcDatabase Db, string Id)> SourceAsync(JsonObject? cdcPayload = null, JsonArray? schemas = null)
    {
        var db = await CdcDatabase.CreateAsync(App.Server);
        var config = db.Config();
        foreach (var (key, value) in cdcPayload ?? new JsonObject()) config[key] = value?.DeepClone();
        var created = await CreateSourceAsync(config: config, schemas: schemas ?? NothingEnabled());
        return (db, created["id"]!.GetValue<string>());
    }

    private Task<ApiResponse> PostAsync(string id, string action, JsonObject? body = null) => Api.PostAsync($"{SourceUrl(id)}{action}/", body ?? new JsonObject());

    private static Task<bool> SlotExistsAsync(CdcDatabase db, string slot) =>
        db.ScalarAsync<bool>($"SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')");

    private static Task<bool> PublicationExistsAsync(CdcDatabase db, string publication) =>
        db.ScalarAsync<bool>($"SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{publication}')");

    private static async Task<string[]> PublishedAsync(CdcDatabase db, string publication) =>
        await db.ScalarAsync<string[]>($"SELECT coalesce(array_agg(schemaname || '.' || tablename ORDER BY tablename), '{{}}') FROM pg_publication_tables WHERE pubname = '{publication}'") ?? [];

    private async Task<string> SchemaIdAsync(string id, string name) =>
        (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().First(s => s!["name"]!.GetValue<string>() == name)!["id"]!.GetValue<string>();

    [Fact]
    public async Task enabling_creates_the_slot_and_publication_once_and_cdc_schemas_join_and_leave_the_publication()
    {
        var (db, id) = await SourceAsync();
        try
        {
            var enabled = (await PostAsync(id, "enable_cdc")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            enabled["success"]!.GetValue<bool>().ShouldBeTrue();
            var slot = enabled["cdc"]!["slot_name"]!.GetValue<string>();
            var publication = enabled["cdc"]!["publication_name"]!.GetValue<string>();
            var hex = Guid.Parse(id).ToString("N")[^12..];
            slot.ShouldBe($"posthog_{hex}");
            publication.ShouldBe($"posthog_pub_{hex}");
            (await SlotExistsAsync(db, slot)).ShouldBeTrue();
            (await db.ScalarAsync<string>($"SELECT plugin::text FROM pg_replication_slots WHERE slot_name = '{slot}'")).ShouldBe("pgoutput");
            (await PublicationExistsAsync(db, publication)).ShouldBeTrue();

            (await PostAsync(id, "enable_cdc")).ShouldBeProblem(HttpStatusCode.Conflict, "CDC is already enabled on this source.");

            var source = (await Api.GetAsync(SourceUrl(id))).Json;
            source["cdc"]!["enabled"]!.GetValue<bool>().ShouldBeTrue();
            source["cdc"]!["slot_name"]!.GetValue<string>().ShouldBe(slot);
            source["job_inputs"]!["cdc_enabled"]!.GetValue<bool>().ShouldBeTrue();
            source["job_inputs"]!["cdc_slot_name"]!.GetValue<string>().ShouldBe(slot);

            var orders = await SchemaIdAsync(id, "orders");
            (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
            {
                ["schemas"] = new JsonArray(new JsonObject { ["id"] = orders, ["should_sync"] = true, ["sync_type"] = "cdc", ["sync_frequency"] = "1min" }),
            })).ShouldHaveStatus(HttpStatusCode.OK);
            (await PublishedAsync(db, publication)).ShouldBe(["public.orders"]);

            (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
            {
                ["schemas"] = new JsonArray(new JsonObject { ["id"] = orders, ["should_sync"] = false }),
            })).ShouldHaveStatus(HttpStatusCode.OK);
            (await PublishedAsync(db, publication)).ShouldBeEmpty();

            var types = await EventTypesAsync(id);
            types.Where(t => t.StartsWith("cdc_", StringComparison.Ordinal)).ShouldBe(["cdc_enabled", "cdc_publication_tables_changed", "cdc_publication_tables_changed"]);
            var history = (await Api.GetAsync($"{SourceUrl(id)}history/?type=cdc_enabled")).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
            history["data"]!["consistent_point"]!.GetValue<string>().ShouldMatch("^[0-9A-F]+/[0-9A-F]+$");
            history["data"]!["slot_created"]!.GetValue<bool>().ShouldBeTrue();
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task a_cdc_schema_without_a_primary_key_is_refused_and_nothing_changes_on_the_database()
    {
        var (db, id) = await SourceAsync(schemas: [new JsonObject { ["name"] = "no_pk", ["should_sync"] = false }]);
        try
        {
            var enabled = (await PostAsync(id, "enable_cdc")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            var publication = enabled["cdc"]!["publication_name"]!.GetValue<string>();
            var noPk = await SchemaIdAsync(id, "no_pk");
            var response = await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
            {
                ["schemas"] = new JsonArray(new JsonObject { ["id"] = noPk, ["should_sync"] = true, ["sync_type"] = "cdc" }),
            });
            response.ShouldHaveStatus(HttpStatusCode.BadRequest).Text.ShouldContain("CDC requires a primary key on table 'no_pk'. Add a primary key on the source table and retry.");
            (await PublishedAsync(db, publication)).ShouldBeEmpty();
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task disabling_drops_slot_and_publication_and_resets_the_cdc_schemas()
    {
        var (db, id) = await SourceAsync();
        try
        {
            var enabled = (await PostAsync(id, "enable_cdc")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            var slot = enabled["cdc"]!["slot_name"]!.GetValue<string>();
            var publication = enabled["cdc"]!["publication_name"]!.GetValue<string>();
            var orders = await SchemaIdAsync(id, "orders");
            (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
            {
                ["schemas"] = new JsonArray(new JsonObject { ["id"] = orders, ["should_sync"] = true, ["sync_type"] = "cdc" }),
            })).ShouldHaveStatus(HttpStatusCode.OK);

            var disabled = (await PostAsync(id, "disable_cdc")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            disabled["success"]!.GetValue<bool>().ShouldBeTrue();
            (await SlotExistsAsync(db, slot)).ShouldBeFalse();
            (await PublicationExistsAsync(db, publication)).ShouldBeFalse();

            var source = (await Api.GetAsync(SourceUrl(id))).Json;
            source["cdc"].ShouldBeNull();
            source["job_inputs"]!.AsObject().Select(kv => kv.Key).ShouldNotContain(k => k.StartsWith("cdc_"));
            var schema = source["schemas"]!.AsArray().First(s => s!["name"]!.GetValue<string>() == "orders")!;
            schema["sync_type"].ShouldBeNull();
            schema["should_sync"]!.GetValue<bool>().ShouldBeFalse();

            var again = (await PostAsync(id, "disable_cdc")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            again.ToJsonString().ShouldBe("""{"success":true,"already_disabled":true}""");
            (await PostAsync(id, "cdc_status")).Status.ShouldBe(HttpStatusCode.MethodNotAllowed);
            (await Api.GetAsync($"{SourceUrl(id)}cdc_status/")).ShouldHaveStatus(HttpStatusCode.OK).Json.ToJsonString().ShouldBe("""{"enabled":false}""");
        }
        finally { await db.DropAsync(); }
    }

    [Theory]
    [InlineData("""{"cdc_lag_warning_threshold_mb":"a lot"}""", "cdc_lag_warning_threshold_mb must be an integer.")]
    [InlineData("""{"cdc_lag_critical_threshold_mb":0}""", "cdc_lag_critical_threshold_mb must be >= 1.")]
    [InlineData("""{"cdc_lag_warning_threshold_mb":500,"cdc_lag_critical_threshold_mb":400}""", "Warning threshold must be less than critical threshold.")]
    public async Task settings_are_validated_in_posthogs_words(string body, string detail)
    {
        var (db, id) = await SourceAsync();
        try
        {
            (await PostAsync(id, "update_cdc_settings", JsonNode.Parse(body)!.AsObject())).ShouldBeProblem(HttpStatusCode.BadRequest, "CDC is not enabled on this source.");
            (await PostAsync(id, "enable_cdc")).ShouldHaveStatus(HttpStatusCode.OK);
            (await PostAsync(id, "update_cdc_settings", JsonNode.Parse(body)!.AsObject())).ShouldBeProblem(HttpStatusCode.BadRequest, detail);
            (await PostAsync(id, "update_cdc_settings", new JsonObject { ["cdc_lag_warning_threshold_mb"] = 1024 })).Json.ToJsonString()
                .ShouldBe("""{"success":true,"unchanged":true}""");
            (await PostAsync(id, "update_cdc_settings", new JsonObject { ["cdc_lag_warning_threshold_mb"] = 100 })).Json.ToJsonString().ShouldBe("""{"success":true}""");
            (await EventTypesAsync(id)).Count(t => t == "cdc_settings_changed").ShouldBe(1);
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task self_managed_mode_verifies_the_users_publication_and_creates_only_the_slot()
    {
        var (db, id) = await SourceAsync();
        try
        {
            (await PostAsync(id, "enable_cdc", new JsonObject { ["cdc_management_mode"] = "self_managed" }))
                .ShouldHaveStatus(HttpStatusCode.BadRequest).Text.ShouldContain("Publication 'posthog_pub' does not exist.");
            (await db.ScalarAsync<long>("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")).ShouldBe(0);

            await db.ExecuteAsync($"SET ROLE {CdcDatabase.Owner}; CREATE PUBLICATION posthog_pub FOR TABLE public.orders;");
            var enabled = (await PostAsync(id, "enable_cdc", new JsonObject { ["cdc_management_mode"] = "self_managed" })).ShouldHaveStatus(HttpStatusCode.OK).Json;
            enabled["cdc"]!["publication_name"]!.GetValue<string>().ShouldBe("posthog_pub");
            (await SlotExistsAsync(db, enabled["cdc"]!["slot_name"]!.GetValue<string>())).ShouldBeTrue();

            (await PostAsync(id, "disable_cdc")).ShouldHaveStatus(HttpStatusCode.OK);
            (await PublicationExistsAsync(db, "posthog_pub")).ShouldBeTrue(); // the DBA's, not ours to drop
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task a_custom_slot_name_that_exists_is_refused()
    {
        var (db, id) = await SourceAsync();
        try
        {
            await db.ExecuteAsync("SELECT pg_create_logical_replication_slot('taken_slot', 'pgoutput')");
            var response = await PostAsync(id, "enable_cdc", new JsonObject { ["cdc_slot_name"] = "taken_slot" });
            response.ShouldBeProblem(HttpStatusCode.BadRequest, "A replication slot named 'taken_slot' already exists on your database.");
            (await db.ScalarAsync<long>("SELECT count(*) FROM pg_publication")).ShouldBe(0);
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task a_create_with_cdc_enabled_provisions_before_recording_and_publishes_its_cdc_tables()
    {
        var (db, id) = await SourceAsync(
            new JsonObject { ["cdc_enabled"] = true, ["cdc_lag_warning_threshold_mb"] = 200 },
            [new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "cdc" }, new JsonObject { ["name"] = "customers", ["should_sync"] = false }]);
        try
        {
            var source = (await Api.GetAsync(SourceUrl(id))).Json;
            var publication = source["cdc"]!["publication_name"]!.GetValue<string>();
            source["cdc"]!["lag_warning_threshold_mb"]!.GetValue<int>().ShouldBe(200);
            (await SlotExistsAsync(db, source["cdc"]!["slot_name"]!.GetValue<string>())).ShouldBeTrue();
            (await PublishedAsync(db, publication)).ShouldBe(["public.orders"]);
            var types = await EventTypesAsync(id);
            types[0].ShouldBe("source_created");
            types[^1].ShouldBe("cdc_enabled");
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task a_create_with_cdc_on_a_table_without_a_primary_key_leaves_nothing_anywhere()
    {
        var db = await CdcDatabase.CreateAsync(App.Server);
        try
        {
            var config = db.Config();
            config["cdc_enabled"] = true;
            var response = await Api.PostAsync(Sources, CreateBody(config: config, schemas: [new JsonObject { ["name"] = "no_pk", ["should_sync"] = true, ["sync_type"] = "cdc" }]));
            response.ShouldBeProblem(HttpStatusCode.BadRequest, "CDC requires a primary key on each table. The following tables have no primary key: no_pk.");
            (await db.ScalarAsync<long>("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")).ShouldBe(0);
            (await db.ScalarAsync<long>("SELECT count(*) FROM pg_publication")).ShouldBe(0);
            (await EventCountAsync()).ShouldBe(0);
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task the_stored_credentials_check_runs_every_check_for_the_sources_cdc_tables()
    {
        var (db, id) = await SourceAsync();
        try
        {
            var result = (await PostAsync(id, "check_cdc_prerequisites_for_source", new JsonObject { ["tables"] = new JsonArray("orders", "no_pk") }))
                .ShouldHaveStatus(HttpStatusCode.OK).Json;
            result["valid"]!.GetValue<bool>().ShouldBeFalse();
            result["errors"]!.AsArray().Select(e => e!.GetValue<string>()).ShouldContain("Table 'public.no_pk' has no primary key. CDC requires a primary key on each table.");
            result["checks"]!.AsArray().Count.ShouldBe(20);
            var plain = (await PostAsync(id, "check_cdc_prerequisites_for_source")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            plain["valid"]!.GetValue<bool>().ShouldBeTrue();
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task cdc_calls_on_a_source_of_a_type_without_cdc_say_so()
    {
        var created = await Api.PostAsync(Sources, new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = FakeStripeServer.FullKey },
                ["schemas"] = new JsonArray(new JsonObject { ["name"] = "Customer", ["should_sync"] = false }),
            },
        });
        var id = created.ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        (await PostAsync(id, "enable_cdc")).ShouldBeProblem(HttpStatusCode.BadRequest, "CDC is not supported for source type: Stripe");
        (await Api.GetAsync($"{SourceUrl(id)}cdc_status/")).ShouldBeProblem(HttpStatusCode.BadRequest, "CDC is not supported for source type: Stripe");
    }
}
