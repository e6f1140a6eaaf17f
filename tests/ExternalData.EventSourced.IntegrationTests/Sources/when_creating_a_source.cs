using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

public sealed class when_creating_a_source(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task answers_201_with_location_and_the_full_source_after_a_live_check_and_discovery()
    {
        var response = await Api.PostAsync(Sources, CreateBody(prefix: "prod", description: "orders db"));

        response.ShouldHaveStatus(HttpStatusCode.Created);
        var source = response.Json;
        var id = source["id"]!.GetValue<string>();
        response.Location.ShouldBe($"{Sources}{id}/");
        source["source_type"]!.GetValue<string>().ShouldBe("Postgres");
        source["prefix"]!.GetValue<string>().ShouldBe("prod");
        source["description"]!.GetValue<string>().ShouldBe("orders db");
        source["status"]!.GetValue<string>().ShouldBe("Running");
        source["access_method"]!.GetValue<string>().ShouldBe("warehouse");
        source["created_via"]!.GetValue<string>().ShouldBe("api");
        source["created_by"]!.GetValue<string>().ShouldBe("test-admin");
        source["version"]!.GetValue<int>().ShouldBe(CreatedVersion);
        source["supports_column_selection"]!.GetValue<bool>().ShouldBeTrue();
        source["supports_webhooks"]!.GetValue<bool>().ShouldBeFalse();

        // Sanitised: the known non-secret keys only.
        var jobInputs = source["job_inputs"]!.AsObject();
        jobInputs.Select(kv => kv.Key).Order().ShouldBe(["database", "host", "port", "schema", "user"]);
        jobInputs["port"]!.GetValue<long>().ShouldBe(App.Source.Port);

        var schemas = source["schemas"]!.AsArray().Select(s => s!).ToList();
        schemas.Select(s => s["name"]!.GetValue<string>()).ShouldBe(["big_orders", "customers", "events", "orders", "payroll", "tenant_notes"]);
        var orders = schemas.Single(s => s["name"]!.GetValue<string>() == "orders");
        orders["should_sync"]!.GetValue<bool>().ShouldBeTrue();
        orders["sync_type"]!.GetValue<string>().ShouldBe("incremental");
        orders["incremental"]!.GetValue<bool>().ShouldBeTrue();
        orders["incremental_field"]!.GetValue<string>().ShouldBe("updated_at");
        orders["primary_key_columns"]!.AsArray().Select(x => x!.GetValue<string>()).ShouldBe(["id"]);
        orders["sync_frequency"]!.GetValue<string>().ShouldBe("6hour");
        orders["description"]!.GetValue<string>().ShouldBe("Customer orders");
        orders["available_columns"]!.AsArray().Count.ShouldBe(4);
        var events = schemas.Single(s => s["name"]!.GetValue<string>() == "events");
        events["should_sync"]!.GetValue<bool>().ShouldBeFalse();
        events["sync_type"].ShouldBeNull();

        (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json["id"]!.GetValue<string>().ShouldBe(id);
        (await EventCountAsync(id)).ShouldBe(CreatedVersion);
    }

    [Fact]
    public async Task a_direct_query_source_takes_its_name_from_the_prefix_and_has_no_sync_settings()
    {
        var body = CreateBody(prefix: "  Live orders  ");
        body["access_method"] = "direct";
        var source = (await Api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json;

        source["prefix"]!.GetValue<string>().ShouldBe("Live orders");
        source["engine"]!.GetValue<string>().ShouldBe("duckdb");
        source["schemas"]!.AsArray().ShouldAllBe(s => s!["sync_type"] == null && s["sync_frequency"] == null);
    }

    [Fact]
    public async Task fills_the_fields_from_a_connection_string_and_keeps_it_secret()
    {
        var config = new JsonObject
        {
            ["connection_string"] = $"postgresql://{Fixtures.SourceDatabase.Reader}:{App.Source.ReaderPassword}@{App.Source.Host}:{App.Source.Port}/{App.Source.Name}",
            ["schema"] = "public",
        };
        var source = (await Api.PostAsync(Sources, CreateBody(config: config))).ShouldHaveStatus(HttpStatusCode.Created).Json;

        source["job_inputs"]!["host"]!.GetValue<string>().ShouldBe(App.Source.Host);
        source["job_inputs"]!.AsObject().ContainsKey("connection_string").ShouldBeFalse();
        source.ToJsonString().ShouldNotContain(App.Source.ReaderPassword);
    }

    [Fact]
    public async Task blank_schema_discovers_every_schema_with_qualified_names()
    {
        var schemas = new JsonArray { new JsonObject { ["name"] = "sales.leads", ["should_sync"] = true, ["sync_type"] = "full_refresh" } };
        var source = await CreateSourceAsync(config: PostgresConfig(schema: ""), schemas: schemas);

        var names = source["schemas"]!.AsArray().Select(s => s!["name"]!.GetValue<string>()).ToList();
        names.ShouldContain("sales.leads");
        names.ShouldContain("public.orders");
    }

    [Fact]
    public async Task records_the_actor_channel_and_correlation_id_on_the_event()
    {
        var source = await Api.SendAsync(HttpMethod.Post, Sources, CreateBody(), new Dictionary<string, string> { ["X-Request-Id"] = "req-create-42" });
        var id = source.ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();

        await using var connection = new Npgsql.NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            $"SELECT type, correlation_id, causation_id, user_name, headers::text FROM {App.Schema}.mt_events WHERE stream_id = @id::uuid", connection);
        command.Parameters.AddWithValue("id", id);
        await using var reader = await command.ExecuteReaderAsync();
        (await reader.ReadAsync()).ShouldBeTrue();
        reader.GetString(0).ShouldBe("source_created");
        reader.GetString(1).ShouldBe("req-create-42");
        reader.GetString(2).ShouldContain("POST");
        reader.GetString(3).ShouldBe("test-admin");
        var headers = JsonNode.Parse(reader.GetString(4))!;
        headers["created_via"]!.GetValue<string>().ShouldBe("api");
        headers["actor_name"]!.GetValue<string>().ShouldBe("test-admin");
        Guid.TryParse(headers["actor_id"]!.GetValue<string>(), out _).ShouldBeTrue();
    }
}
