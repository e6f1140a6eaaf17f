using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using Shouldly;
using ExternalData.EventSourced.Infrastructure.Messaging;

namespace ExternalData.EventSourced.IntegrationTests.Mcp;

/// <summary>The MCP server, driven by the SDK's own client over streamable HTTP: PostHog's tool names, the same keys,
/// scopes and projects as REST, the same use cases, and <c>created_via = mcp</c> in event body and metadata.</summary>
public sealed class when_an_agent_uses_the_mcp_tools(AppFixture app) : IntegrationContext(app)
{
    private async Task<McpClient> ConnectAsync(string? key = null)
    {
        var transport = new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = new Uri(App.Host.Server.BaseAddress, "/mcp"),
            TransportMode = HttpTransportMode.StreamableHttp,
            AdditionalHeaders = new Dictionary<string, string> { ["Authorization"] = $"Bearer {key ?? App.AdminKey}" },
        }, App.Host.Server.CreateClient(), ownsHttpClient: true);
        return await McpClient.CreateAsync(transport);
    }

    private static string Text(CallToolResult result) => result.Content.OfType<TextContentBlock>().Single().Text;

    private Task<CallToolResult> CallAsync(McpClient client, string tool, Dictionary<string, object?> arguments) =>
        client.CallToolAsync(tool, arguments).AsTask();

    [Fact]
    public async Task the_tools_have_posthogs_names_and_schemas_that_describe_their_arguments()
    {
        await using var client = await ConnectAsync();
        var tools = await client.ListToolsAsync();

        tools.Select(t => t.Name).Order().ShouldBe([
            "data-warehouse-source-connect-link", "data-warehouse-source-setup", "data-warehouse-stored-credentials-list",
            "external-data-schemas-cancel", "external-data-schemas-delete-data", "external-data-schemas-incremental-fields-create", "external-data-schemas-list",
            "external-data-schemas-partial-update", "external-data-schemas-reload", "external-data-schemas-resync", "external-data-schemas-retrieve",
            "external-data-sources-check-cdc-prerequisites-create", "external-data-sources-connections-list", "external-data-sources-create", "external-data-sources-create-webhook-create", "external-data-sources-delete-webhook-create", "external-data-sources-destroy", "external-data-sources-history",
            "external-data-sources-list", "external-data-sources-partial-update", "external-data-sources-refresh-schemas", "external-data-sources-reload", "external-data-sources-retrieve",
            "external-data-sources-webhook-info-retrieve", "external-data-sources-wizard",
        ]);
        var list = tools.Single(t => t.Name == "external-data-sources-list");
        list.Description.ShouldNotBeNullOrEmpty();
        var schema = JsonNode.Parse(list.JsonSchema.GetRawText())!;
        schema["properties"]!["project_id"]!["description"]!.GetValue<string>().ShouldContain("project");
        (schema["required"]?.AsArray().Select(r => r!.GetValue<string>()) ?? []).ShouldNotContain("project_id", "PostHog's agent works in its active project");
        var create = JsonNode.Parse(tools.Single(t => t.Name == "external-data-sources-create").JsonSchema.GetRawText())!;
        create["properties"]!.AsObject().Select(p => p.Key).ShouldBeSubsetOf(["project_id", "source_type", "payload", "prefix", "description", "access_method", "direct_query_enabled"]);
        create["required"]!.AsArray().Select(r => r!.GetValue<string>()).Order().ShouldBe(["payload", "source_type"]);

        var wizard = await client.CallToolAsync("external-data-sources-wizard", new Dictionary<string, object?> { ["project_id"] = ProjectId, ["source_type"] = "Stripe" });
        JsonNode.Parse(wizard.Content.OfType<TextContentBlock>().Single().Text)!.AsObject().Select(kv => kv.Key).ShouldBe(["Stripe"]);
        var unknown = await client.CallToolAsync("external-data-sources-wizard", new Dictionary<string, object?> { ["project_id"] = ProjectId, ["source_type"] = "Oracle" });
        unknown.IsError.ShouldBe(true);
        var connections = await client.CallToolAsync("external-data-sources-connections-list", new Dictionary<string, object?> { ["project_id"] = ProjectId });
        JsonNode.Parse(connections.Content.OfType<TextContentBlock>().Single().Text)!.AsArray().ShouldBeEmpty();
    }

    [Fact]
    public async Task the_webhook_tools_register_read_and_remove_through_the_same_use_cases_and_say_mcp()
    {
        await using var client = await ConnectAsync();
        var created = (await Api.PostAsync(Sources, new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["stripe_secret_key"] = FakeStripeServer.FullKey,
                ["schemas"] = new JsonArray(new JsonObject { ["name"] = "Customer", ["should_sync"] = false }),
            },
        })).ShouldHaveStatus(System.Net.HttpStatusCode.Created).Json;
        var id = created["id"]!.GetValue<string>();

        var registered = JsonNode.Parse(Text(await CallAsync(client, "external-data-sources-create-webhook-create", new() { ["project_id"] = ProjectId, ["id"] = id })))!;
        registered["success"]!.GetValue<bool>().ShouldBeTrue(registered.ToJsonString());
        var info = JsonNode.Parse(Text(await CallAsync(client, "external-data-sources-webhook-info-retrieve", new() { ["project_id"] = ProjectId, ["id"] = id })))!;
        info["external_status"]!["exists"]!.GetValue<bool>().ShouldBeTrue();
        var history = (await Api.GetAsync($"{SourceUrl(id)}history/?type=webhook_registered")).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
        history["created_via"]!.GetValue<string>().ShouldBe("mcp");
        history["data"]!["registered_via"]!.GetValue<string>().ShouldBe("mcp");

        // Discount (webhook-only) now syncs by webhook, so removal is refused, as over REST.
        var refused = await CallAsync(client, "external-data-sources-delete-webhook-create", new() { ["project_id"] = ProjectId, ["id"] = id });
        refused.IsError.ShouldBe(true);
        Text(refused).ShouldContain("Cannot delete webhook while tables are using webhook sync: Discount.");
    }

    [Fact]
    public async Task the_cdc_prerequisite_tool_runs_the_same_checks_with_a_sources_stored_credentials()
    {
        await using var client = await ConnectAsync();
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var result = await CallAsync(client, "external-data-sources-check-cdc-prerequisites-create",
            new() { ["project_id"] = ProjectId, ["source_id"] = id, ["tables"] = new[] { "orders" } });
        result.IsError.ShouldNotBe(true, Text(result));
        var report = JsonNode.Parse(Text(result))!;
        // The suite's reader role has no REPLICATION: the tool says so, with the fix, as REST does.
        report["valid"]!.GetValue<bool>().ShouldBeFalse();
        var replication = report["checks"]!.AsArray().Single(c => c!["id"]!.GetValue<string>() == "role.replication")!;
        replication["status"]!.GetValue<string>().ShouldBe("fail");
        replication["remediation"]!.GetValue<string>().ShouldBe($"ALTER ROLE \"{SourceDatabase.Reader}\" WITH REPLICATION;");
        var rest = (await Api.PostAsync($"{SourceUrl(id)}check_cdc_prerequisites_for_source/", new JsonObject { ["tables"] = new JsonArray("orders") })).Json;
        report["checks"]!.AsArray().Select(c => c!["status"]!.GetValue<string>()).ShouldBe(rest["checks"]!.AsArray().Select(c => c!["status"]!.GetValue<string>()));
    }

    [Fact]
    public async Task create_retrieve_list_and_history_run_the_same_use_cases_and_say_mcp()
    {
        await using var client = await ConnectAsync();
        var canary = $"canary-{Guid.NewGuid():N}";
        var payload = await CanaryConfigAsync(canary);
        payload["schemas"] = OrdersIncremental();

        var created = await CallAsync(client, "external-data-sources-create", new() { ["project_id"] = ProjectId, ["source_type"] = "Postgres", ["payload"] = payload, ["prefix"] = "agent" });
        created.IsError.ShouldNotBe(true, Text(created));
        Text(created).ShouldNotContain(canary);
        var source = JsonNode.Parse(Text(created))!;
        var id = source["id"]!.GetValue<string>();
        source["created_via"]!.GetValue<string>().ShouldBe("mcp");

        var retrieved = JsonNode.Parse(Text(await CallAsync(client, "external-data-sources-retrieve", new() { ["project_id"] = ProjectId, ["id"] = id })))!;
        retrieved["schemas"]!.AsArray().Count.ShouldBe(PublicTables);
        var listed = JsonNode.Parse(Text(await CallAsync(client, "external-data-sources-list", new() { ["project_id"] = ProjectId })))!;
        listed["results"]!.AsArray().Single()!["id"]!.GetValue<string>().ShouldBe(id);
        (await CallAsync(client, "external-data-sources-partial-update", new() { ["project_id"] = ProjectId, ["id"] = id, ["description"] = "by an agent" })).IsError.ShouldNotBe(true);

        var history = JsonNode.Parse(Text(await CallAsync(client, "external-data-sources-history", new() { ["project_id"] = ProjectId, ["id"] = id, ["type"] = "source_updated" })))!;
        var entry = history["results"]!.AsArray().ShouldHaveSingleItem()!;
        entry["created_via"]!.GetValue<string>().ShouldBe("mcp");
        entry["summary"]!.GetValue<string>().ShouldBe("description changed");
        var all = await CallAsync(client, "external-data-sources-history", new() { ["project_id"] = ProjectId, ["id"] = id });
        Text(all).ShouldNotContain(canary);
        Text(await CallAsync(client, "external-data-sources-list", new() { ["project_id"] = ProjectId })).ShouldNotContain(canary);
        await AssertNowhereStoredAsync(canary);

        await using var session = App.Host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId);
        foreach (var e in await session.Events.FetchStreamAsync(Guid.Parse(id)))
            e.Headers![CallerMetadata.CreatedViaHeader]!.ToString().ShouldBe("mcp");
        (await session.Events.FetchStreamAsync(Guid.Parse(id)))[0].Data.ShouldBeOfType<SourceCreated>().CreatedVia.ShouldBe("mcp");
    }

    [Fact]
    public async Task the_agent_safe_flow_works_through_tools_alone()
    {
        await using var client = await ConnectAsync();
        var link = JsonNode.Parse(Text(await CallAsync(client, "data-warehouse-source-connect-link", new() { ["project_id"] = ProjectId, ["source_type"] = "Postgres" })))!;
        link["instructions"]!.GetValue<string>().ShouldContain("Never ask for passwords");
        (await App.Anonymous().PostAsync($"{new Uri(link["connect_url"]!.GetValue<string>()).AbsolutePath}/credentials", new JsonObject { ["payload"] = PostgresConfig() }))
            .Status.ShouldBe(System.Net.HttpStatusCode.Created);

        var stored = JsonNode.Parse(Text(await CallAsync(client, "data-warehouse-stored-credentials-list", new() { ["project_id"] = ProjectId })))!.AsArray();
        var credential = stored.ShouldHaveSingleItem()!["credential_id"]!.GetValue<string>();
        var setUp = await CallAsync(client, "data-warehouse-source-setup", new()
        {
            ["project_id"] = ProjectId, ["source_type"] = "Postgres", ["payload"] = new JsonObject { ["credential_id"] = credential }, ["tables"] = new[] { "orders" },
        });
        setUp.IsError.ShouldNotBe(true, Text(setUp));
        JsonNode.Parse(Text(setUp))!["source"]!["created_via"]!.GetValue<string>().ShouldBe("mcp");
    }

    [Fact]
    public async Task a_missing_scope_or_another_project_is_a_tool_error_and_no_key_is_refused()
    {
        var reader = await App.IssueKeyAsync("mcp-reader", [Scopes.Read], [ProjectId]);
        await using var client = await ConnectAsync(reader);

        var write = await CallAsync(client, "external-data-sources-destroy", new() { ["project_id"] = ProjectId, ["id"] = Guid.NewGuid() });
        write.IsError.ShouldBe(true);
        Text(write).ShouldContain("API key missing required scope 'external_data_source:write'");
        Text(write).ShouldNotStartWith("An error occurred");
        var elsewhere = await CallAsync(client, "external-data-sources-list", new() { ["project_id"] = ProjectId + "7" });
        elsewhere.IsError.ShouldBe(true);
        Text(elsewhere).ShouldContain("Not found");
        Text(elsewhere).ShouldContain("project_id");
        (await CallAsync(client, "external-data-sources-retrieve", new() { ["project_id"] = ProjectId, ["id"] = Guid.NewGuid() })).IsError.ShouldBe(true);

        await Should.ThrowAsync<Exception>(() => ConnectAsync("edk_not_a_key"));
    }

    [Fact]
    public async Task racing_creates_with_one_prefix_leave_one_source_and_say_why_to_the_others()
    {
        await using var client = await ConnectAsync();
        var payload = PostgresConfig();
        payload["schemas"] = OrdersIncremental();

        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ =>
            CallAsync(client, "external-data-sources-create", new() { ["project_id"] = ProjectId, ["source_type"] = "Postgres", ["payload"] = payload, ["prefix"] = "raced" })));

        results.Count(r => r.IsError != true).ShouldBe(1);
        // Lost at the check ("Prefix already exists") or at the unique index (the race's own text), never an opaque failure.
        results.Where(r => r.IsError == true).ShouldAllBe(r => Text(r).Contains("prefix", StringComparison.OrdinalIgnoreCase));
    }
}
