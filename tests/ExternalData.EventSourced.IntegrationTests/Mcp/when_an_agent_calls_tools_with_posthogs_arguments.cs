using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Mcp;

/// <summary>PostHog's agent calls the tools with PostHog's argument names and without a project (it works in its active
/// one); every refusal says what was wrong in words it can act on. Driven by the SDK's own client.</summary>
public sealed class when_an_agent_calls_tools_with_posthogs_arguments(AppFixture app) : IntegrationContext(app)
{
    private static readonly string[] WriteTools =
    [
        "external-data-sources-create", "external-data-sources-partial-update", "external-data-sources-destroy", "external-data-sources-refresh-schemas",
        "data-warehouse-source-setup", "external-data-sources-create-webhook-create", "external-data-sources-delete-webhook-create", "external-data-sources-reload",
        "external-data-sources-check-cdc-prerequisites-create", "external-data-schemas-partial-update", "external-data-schemas-reload",
        "external-data-schemas-resync", "external-data-schemas-cancel", "external-data-schemas-delete-data", "external-data-schemas-incremental-fields-create",
    ];

    private async Task<McpClient> ConnectAsync(string key)
    {
        var transport = new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = new Uri(App.Host.Server.BaseAddress, "/mcp"),
            TransportMode = HttpTransportMode.StreamableHttp,
            AdditionalHeaders = new Dictionary<string, string> { ["Authorization"] = $"Bearer {key}" },
        }, App.Host.Server.CreateClient(), ownsHttpClient: true);
        return await McpClient.CreateAsync(transport);
    }

    private static string Text(CallToolResult result) => result.Content.OfType<TextContentBlock>().Single().Text;

    private static async Task<JsonNode> OkAsync(McpClient client, string tool, Dictionary<string, object?> arguments)
    {
        var result = await client.CallToolAsync(tool, arguments);
        result.IsError.ShouldNotBe(true, $"{tool}: {Text(result)}");
        return JsonNode.Parse(Text(result))!;
    }

    private static async Task<string> RefusedAsync(McpClient client, string tool, Dictionary<string, object?> arguments)
    {
        var result = await client.CallToolAsync(tool, arguments);
        result.IsError.ShouldBe(true, $"{tool} should have been refused");
        Text(result).ShouldNotStartWith("An error occurred", customMessage: "an agent needs our words, not only the SDK's generic text");
        return Text(result);
    }

    [Fact]
    public async Task a_one_project_key_works_with_no_project_and_lists_the_count_rest_gives()
    {
        var key = await App.IssueKeyAsync("agent", Scopes.All, [ProjectId]);
        await using var client = await ConnectAsync(key);
        for (var i = 0; i < 3; i++) await CreateSourceAsync(prefix: $"counted_{i}");

        var all = await OkAsync(client, "external-data-sources-list", []);
        all["count"]!.GetValue<long>().ShouldBe(3);
        all["results"]!.AsArray().Count.ShouldBe(3);

        // Paged and searched, the count is the same query's as REST's: the project's total, not the page size.
        var page = await OkAsync(client, "external-data-sources-list", new() { ["limit"] = 2, ["offset"] = 0 });
        var rest = (await Api.GetAsync($"{Sources}?limit=2&offset=0")).Json;
        page["count"]!.GetValue<long>().ShouldBe(rest["count"]!.GetValue<long>());
        page["count"]!.GetValue<long>().ShouldBe(3);
        page["results"]!.AsArray().Select(s => s!["id"]!.GetValue<string>()).ShouldBe(rest["results"]!.AsArray().Select(s => s!["id"]!.GetValue<string>()));
        page["next"]!.GetValue<string>().ShouldEndWith($"/api/projects/{ProjectId}/external_data_sources/?limit=2&offset=2");
        var searched = await OkAsync(client, "external-data-sources-list", new() { ["search"] = "counted_1" });
        searched["count"]!.GetValue<long>().ShouldBe((await Api.GetAsync($"{Sources}?search=counted_1")).Json["count"]!.GetValue<long>());
        searched["count"]!.GetValue<long>().ShouldBe(1);

        // Retrieve is REST's answer, schemas included.
        var id = all["results"]![0]!["id"]!.GetValue<string>();
        var retrieved = await OkAsync(client, "external-data-sources-retrieve", new() { ["id"] = id });
        retrieved["schemas"]!.AsArray().Count.ShouldBe((await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Count);
    }

    [Fact]
    public async Task every_tool_takes_posthogs_argument_names()
    {
        var key = await App.IssueKeyAsync("agent", Scopes.All, [ProjectId]);
        await using var client = await ConnectAsync(key);

        var payload = PostgresConfig();
        payload["schemas"] = OrdersIncremental();
        var created = await OkAsync(client, "external-data-sources-create", new() { ["source_type"] = "Postgres", ["payload"] = payload, ["prefix"] = "posthog_args", ["description"] = "made by an agent" });
        var id = created["id"]!.GetValue<string>();
        created["description"]!.GetValue<string>().ShouldBe("made by an agent");

        // PATCH's answer is the whole source, schemas included, as over REST.
        var updated = await OkAsync(client, "external-data-sources-partial-update", new() { ["id"] = id, ["description"] = "renamed", ["direct_query_enabled"] = false });
        updated["description"]!.GetValue<string>().ShouldBe("renamed");
        updated["schemas"]!.AsArray().Count.ShouldBe(PublicTables);

        (await OkAsync(client, "external-data-sources-refresh-schemas", new() { ["id"] = id }))["total_tables_seen"]!.GetValue<int>().ShouldBe(PublicTables);
        (await OkAsync(client, "external-data-sources-history", new() { ["id"] = id, ["limit"] = 1, ["type"] = "source_updated" }))["count"]!.GetValue<long>().ShouldBe(1);
        (await OkAsync(client, "external-data-sources-wizard", new() { ["source_type"] = "Postgres" })).AsObject().Select(kv => kv.Key).ShouldBe(["Postgres"]);
        (await OkAsync(client, "external-data-sources-connections-list", [])).AsArray().ShouldBeEmpty();
        (await OkAsync(client, "data-warehouse-source-connect-link", new() { ["source_type"] = "Postgres" }))["connect_url"].ShouldNotBeNull();
        (await OkAsync(client, "data-warehouse-stored-credentials-list", new() { ["source_type"] = "Postgres" })).AsArray().ShouldBeEmpty();
        var checks = await OkAsync(client, "external-data-sources-check-cdc-prerequisites-create", new()
        {
            ["source_type"] = "Postgres", ["host"] = App.Source.Host, ["port"] = App.Source.Port, ["database"] = App.Source.Name,
            ["user"] = SourceDatabase.Reader, ["password"] = App.Source.ReaderPassword, ["schema"] = "public", ["tables"] = new[] { "orders" },
        });
        checks["checks"]!.AsArray().ShouldNotBeEmpty();
        (await OkAsync(client, "external-data-sources-webhook-info-retrieve", new() { ["id"] = id })).ShouldNotBeNull();

        // A reload through MCP starts the enabled table's run as the agent's key, recorded with channel mcp (once the run
        // the table started by itself at creation has ended: a reload while a run is in progress starts nothing).
        await RunsSettledAsync(id);
        var reloaded = await OkAsync(client, "external-data-sources-reload", new() { ["id"] = id });
        var job = reloaded["job_ids"]!.AsArray().ShouldHaveSingleItem()!.GetValue<string>();
        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        JsonNode listed;
        while ((listed = (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray().Single(j => j!["id"]!.GetValue<string>() == job)!)["status"]!.GetValue<string>() == "Running")
        {
            DateTimeOffset.UtcNow.ShouldBeLessThan(deadline);
            await Task.Delay(100);
        }

        listed["status"]!.GetValue<string>().ShouldBe("Completed", listed.ToJsonString());
        listed["created_by"]!.GetValue<string>().ShouldBe("agent");

        // The schemas viewset's tools, with the REST body's own names.
        var schemaId = (await OkAsync(client, "external-data-schemas-list", new() { ["search"] = "orders" }))["results"]!.AsArray()
            .Single(s => s!["name"]!.GetValue<string>() == "orders")!["id"]!.GetValue<string>();
        (await OkAsync(client, "external-data-schemas-retrieve", new() { ["id"] = schemaId }))["source"]!["id"]!.GetValue<string>().ShouldBe(id);
        (await OkAsync(client, "external-data-schemas-partial-update", new() { ["id"] = schemaId, ["sync_frequency"] = "12hour" }))["sync_frequency"]!.GetValue<string>().ShouldBe("12hour");
        (await RefusedAsync(client, "external-data-schemas-partial-update", new() { ["id"] = schemaId, ["sync_time_of_day"] = "25:00:00" })).ShouldContain("Invalid sync time of day");
        (await RefusedAsync(client, "external-data-schemas-cancel", new() { ["id"] = schemaId })).ShouldContain("No running sync to cancel.");
        (await OkAsync(client, "external-data-schemas-incremental-fields-create", new() { ["id"] = schemaId }))["incremental_fields"]!.AsArray().ShouldNotBeEmpty();
        (await OkAsync(client, "external-data-schemas-reload", new() { ["id"] = schemaId }))["job_id"].ShouldNotBeNull();
        await RunsSettledAsync(id, 3);
        (await OkAsync(client, "external-data-schemas-resync", new() { ["id"] = schemaId }))["job_id"].ShouldNotBeNull();
        await RunsSettledAsync(id, 4);
        (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json[0]!["trigger"]!.GetValue<string>().ShouldBe("resync");
        (await OkAsync(client, "external-data-schemas-delete-data", new() { ["id"] = schemaId })).ShouldNotBeNull();
        (await OkAsync(client, "external-data-schemas-retrieve", new() { ["id"] = schemaId }))["should_sync"]!.GetValue<bool>().ShouldBeFalse();

        (await OkAsync(client, "external-data-sources-destroy", new() { ["id"] = id }))["source_id"]!.GetValue<string>().ShouldBe(id);
        (await Api.GetAsync(SourceUrl(id))).Status.ShouldBe(System.Net.HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task a_key_for_two_projects_is_told_to_name_project_id()
    {
        var key = await App.IssueKeyAsync("agent", Scopes.All, [ProjectId, ProjectId + "2"]);
        await using var client = await ConnectAsync(key);

        var refused = await RefusedAsync(client, "external-data-sources-list", []);
        refused.ShouldContain("project_id");
        refused.ShouldContain(ProjectId + "2");
        (await OkAsync(client, "external-data-sources-list", new() { ["project_id"] = ProjectId }))["count"]!.GetValue<long>().ShouldBe(0);
    }

    [Fact]
    public async Task a_read_only_key_is_told_which_scope_each_write_tool_needs()
    {
        var key = await App.IssueKeyAsync("reader", [Scopes.Read], [ProjectId]);
        await using var client = await ConnectAsync(key);
        var arguments = new Dictionary<string, object?>
        {
            ["id"] = Guid.NewGuid().ToString(), ["source_type"] = "Postgres", ["payload"] = new JsonObject(),
        };

        foreach (var tool in WriteTools)
        {
            var refused = await RefusedAsync(client, tool, arguments);
            refused.ShouldContain("'external_data_source:write'", customMessage: tool);
            refused.ShouldContain(tool);
        }
    }

    [Fact]
    public async Task a_missing_or_mistyped_argument_is_named()
    {
        var key = await App.IssueKeyAsync("agent", Scopes.All, [ProjectId]);
        await using var client = await ConnectAsync(key);

        (await RefusedAsync(client, "external-data-sources-retrieve", [])).ShouldContain("Missing required argument 'id'");
        (await RefusedAsync(client, "external-data-sources-retrieve", new() { ["id"] = "not-a-uuid" })).ShouldContain("Invalid argument 'id': it must be a UUID string");
        (await RefusedAsync(client, "external-data-sources-create", new() { ["payload"] = new JsonObject() })).ShouldContain("Missing required argument 'source_type'");
        (await RefusedAsync(client, "external-data-sources-list", new() { ["limit"] = "ten" })).ShouldContain("Invalid argument 'limit'");
        (await RefusedAsync(client, "external-data-sources-list", new() { ["limit"] = 0 })).ShouldContain("Invalid argument 'limit'");
        (await RefusedAsync(client, "external-data-sources-retrieve", new() { ["id"] = Guid.NewGuid().ToString() })).ShouldStartWith("Not found");

        // A use case's own refusal names the argument in the tool's (= the REST body's) names.
        var noSchemas = PostgresConfig();
        (await RefusedAsync(client, "external-data-sources-create", new() { ["source_type"] = "Postgres", ["payload"] = noSchemas }))
            .ShouldBe("Invalid argument 'payload.schemas': Schemas not given");
    }
}
