using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

/// <summary>Each PostHog rule of ref §5.2 for Postgres: the exact text, a problem response, and nothing stored.</summary>
public sealed class when_creating_a_source_with_bad_input(AppFixture app) : IntegrationContext(app)
{
    private async Task RefusedAsync(object body, string detail, string? attr = null, HttpStatusCode status = HttpStatusCode.BadRequest)
    {
        (await Api.PostAsync(Sources, body)).ShouldBeProblem(status, detail, attr);
        (await EventCountAsync()).ShouldBe(0);
    }

    [Fact]
    public Task missing_source_type() => RefusedAsync(new JsonObject { ["payload"] = PostgresConfig() }, "This field is required.", "source_type");

    [Fact]
    public Task unknown_source_type() =>
        RefusedAsync(new JsonObject { ["source_type"] = "Oracle", ["payload"] = PostgresConfig() }, "\"Oracle\" is not a valid choice.", "source_type");

    [Fact]
    public Task missing_payload() => RefusedAsync(new JsonObject { ["source_type"] = "Postgres" }, "This field is required.", "payload");

    [Fact]
    public Task prefix_too_long() => RefusedAsync(CreateBody(prefix: new string('a', 101)), "Ensure this field has no more than 100 characters.", "prefix");

    [Fact]
    public Task prefix_of_only_underscores() => RefusedAsync(CreateBody(prefix: "___"), "Prefix cannot consist of only underscores", "prefix");

    [Fact]
    public Task prefix_with_bad_characters() =>
        RefusedAsync(CreateBody(prefix: "9-lives"), "Prefix must contain only letters, numbers, and underscores, and start with a letter or underscore", "prefix");

    [Fact]
    public async Task prefix_already_used_by_the_same_source_type()
    {
        await CreateSourceAsync(prefix: "prod");
        (await Api.PostAsync(Sources, CreateBody(prefix: "prod"))).ShouldBeProblem(HttpStatusCode.BadRequest, "Prefix already exists", "prefix");
        (await EventCountAsync()).ShouldBe(CreatedVersion);
    }

    [Fact]
    public async Task racing_creates_with_the_same_prefix_leave_exactly_one_source()
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Api.PostAsync(Sources, CreateBody(prefix: "raced"))));

        responses.Count(r => r.Status == HttpStatusCode.Created).ShouldBe(1);
        responses.Where(r => r.Status != HttpStatusCode.Created).ShouldAllBe(r =>
            (r.Status == HttpStatusCode.BadRequest || r.Status == HttpStatusCode.Conflict) && r.ContentType == "application/problem+json");
        (await Api.GetAsync($"{Sources}?search=raced")).Json["count"]!.GetValue<int>().ShouldBe(1);
        (await EventCountAsync()).ShouldBe(CreatedVersion);
    }

    [Fact]
    public async Task a_second_source_of_the_type_without_prefix()
    {
        await CreateSourceAsync();
        (await Api.PostAsync(Sources, CreateBody())).ShouldBeProblem(HttpStatusCode.BadRequest, "Source type already exists. Prefix is required", "prefix");
        (await CreateSourceAsync(prefix: "second"))["prefix"]!.GetValue<string>().ShouldBe("second");
    }

    [Fact]
    public Task direct_source_without_a_name()
    {
        var body = CreateBody(prefix: "   ");
        body["access_method"] = "direct";
        return RefusedAsync(body, "Name is required for direct query sources", "prefix");
    }

    [Fact]
    public Task unknown_access_method()
    {
        var body = CreateBody();
        body["access_method"] = "magic";
        return RefusedAsync(body, "\"magic\" is not a valid choice.", "access_method");
    }

    [Fact]
    public Task config_missing_a_required_field()
    {
        var config = PostgresConfig();
        config.Remove("host");
        return RefusedAsync(CreateBody(config: config), "Invalid source config: Required field 'host' is missing", "payload.host");
    }

    [Fact]
    public Task config_with_a_port_that_is_not_a_number()
    {
        var config = PostgresConfig();
        config["port"] = "fifty";
        return RefusedAsync(CreateBody(config: config), "Invalid source config: Field 'port' has an invalid value", "payload.port");
    }

    [Fact]
    public Task wrong_password() =>
        RefusedAsync(CreateBody(config: PostgresConfig(password: "not-the-password")),
            "The database rejected the username or password. Check the user and password, and that this user may log in from outside the database server.");

    [Fact]
    public Task database_that_does_not_exist()
    {
        var config = PostgresConfig();
        config["database"] = "no_such_db";
        return RefusedAsync(CreateBody(config: config), "The database 'no_such_db' does not exist on this server. Check the database name.");
    }

    [Fact]
    public Task nothing_listening_on_the_port()
    {
        var config = PostgresConfig();
        config["port"] = 1;
        return RefusedAsync(CreateBody(config: config),
            "Could not connect to the host: the connection was refused. Check the host and port, and that Postgres listens on it.");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(70000)]
    [InlineData(-5)]
    public Task a_port_out_of_range(int port)
    {
        var config = PostgresConfig();
        config["port"] = port;
        return RefusedAsync(CreateBody(config: config), "Port must be a number between 1 and 65535");
    }

    [Fact]
    public Task host_that_does_not_resolve()
    {
        var config = PostgresConfig();
        config["host"] = "no-such-host.invalid";
        return RefusedAsync(CreateBody(config: config),
            "Couldn't resolve the host 'no-such-host.invalid'. Check that it's spelled correctly and reachable from the public internet.");
    }

    [Fact]
    public Task ssh_tunnel_enabled()
    {
        var config = PostgresConfig();
        config["ssh_tunnel"] = new JsonObject { ["enabled"] = true, ["host"] = "bastion.example.com", ["port"] = 22 };
        return RefusedAsync(CreateBody(config: config),
            "SSH tunnels are not supported yet. Connect to a host reachable from the public internet, or disable the SSH tunnel.", "payload.ssh_tunnel");
    }

    [Fact]
    public Task unresolved_secret_reference()
    {
        var config = PostgresConfig();
        config["password"] = new JsonObject { ["secretRef"] = "vault://db" };
        return RefusedAsync(CreateBody(config: config),
            "Unresolved secret reference(s) for: password. Resolve them to real values before sending, or use the connect link so a person can enter the secrets in their browser.");
    }

    [Fact]
    public Task schemas_not_given() => RefusedAsync(CreateBody(schemas: []), "Schemas not given", "payload.schemas");

    [Fact]
    public Task schemas_that_do_not_exist() =>
        RefusedAsync(CreateBody(schemas: [new JsonObject { ["name"] = "no_such_table", ["should_sync"] = true }]), "Schemas given do not exist in source");

    [Fact]
    public Task cdc_requested_without_cdc() =>
        RefusedAsync(CreateBody(schemas:
            [
                new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "cdc" },
                new JsonObject { ["name"] = "customers", ["should_sync"] = true, ["sync_type"] = "cdc" },
            ]),
            "CDC must be enabled on the source before selecting it as a sync type. The following schemas requested CDC: customers, orders.");

    [Fact]
    public Task incremental_without_a_field() =>
        RefusedAsync(CreateBody(schemas: [new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "incremental" }]),
            "Incremental schemas given do not have an incremental field set");

    [Fact]
    public Task append_without_a_field_type() =>
        RefusedAsync(CreateBody(schemas:
            [new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "append", ["incremental_field"] = "created_at" }]),
            "Incremental schemas given do not have an incremental field type set");

    [Fact]
    public Task lookback_out_of_range()
    {
        var schemas = OrdersIncremental();
        schemas[0]!["incremental_field_lookback_seconds"] = 6_000_000;
        return RefusedAsync(CreateBody(schemas: schemas),
            "incremental_field_lookback_seconds must be an integer between 0 and 5184000 (60 days) for schema 'orders'.");
    }

    [Fact]
    public Task malformed_json() =>
        RefusedAsync("{\"source_type\": \"Postgres\", \"payload\": {",
            "Invalid value for 'payload': the request body is not valid JSON there, or the value has the wrong type.", "payload");

    [Fact]
    public Task a_body_that_is_not_json_at_all() => RefusedAsync("source_type=Postgres", "The request body is not valid JSON.");

    [Fact]
    public Task a_field_of_the_wrong_type() =>
        RefusedAsync("{\"source_type\": \"Postgres\", \"prefix\": 12, \"payload\": {}}",
            "Invalid value for 'prefix': the request body is not valid JSON there, or the value has the wrong type.", "prefix");
}
