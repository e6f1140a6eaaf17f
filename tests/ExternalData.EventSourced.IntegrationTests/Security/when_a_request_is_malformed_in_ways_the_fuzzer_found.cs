using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Security;

/// <summary>The inputs the hostile-request fuzzer found answering 500, each pinned as the 4xx it now gets.</summary>
public sealed class when_a_request_is_malformed_in_ways_the_fuzzer_found(AppFixture app) : IntegrationContext(app)
{
    private const string EmptyUuid = "00000000-0000-0000-0000-000000000000";

    [Fact]
    public async Task the_empty_uuid_is_no_source_on_any_route()
    {
        (await Api.GetAsync(SourceUrl(EmptyUuid))).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await Api.PatchAsync(SourceUrl(EmptyUuid), new JsonObject { ["description"] = "x" })).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await Api.PostAsync($"{SourceUrl(EmptyUuid)}update_cdc_settings/", new JsonObject())).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await Api.DeleteAsync(SourceUrl(EmptyUuid))).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await App.Anonymous().PostAsync($"/public/webhooks/dwh/{EmptyUuid}", new JsonObject())).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        // The key is still checked first, as for any other id.
        (await App.Anonymous().GetAsync(SourceUrl(EmptyUuid))).ShouldHaveStatus(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task a_body_naming_a_property_twice_is_refused_and_stores_nothing()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var before = await EventCountAsync();
        const string twice = """{"description":"a","description":"b"}""";

        (await Api.SendAsync(HttpMethod.Patch, SourceUrl(id), twice)).ShouldBeProblem(HttpStatusCode.BadRequest, "The request body names a property more than once.");
        (await Api.SendAsync(HttpMethod.Post, $"{Sources}check_cdc_prerequisites/", """{"source_type":"Postgres","source_type":"Stripe"}"""))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "The request body names a property more than once.");
        // Nested objects count too.
        (await Api.SendAsync(HttpMethod.Post, Sources, """{"source_type":"Postgres","payload":{"host":"a","host":"b"}}"""))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "The request body names a property more than once.");
        (await EventCountAsync()).ShouldBe(before);
    }

    [Fact]
    public async Task an_mcp_message_with_malformed_params_is_a_json_rpc_error()
    {
        var response = await Api.SendAsync(HttpMethod.Post, "/mcp", """{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"name":"x"}}""",
            new Dictionary<string, string> { ["Accept"] = "application/json, text/event-stream" });

        response.ShouldHaveStatus(HttpStatusCode.BadRequest);
        response.Json["error"]!["code"]!.GetValue<int>().ShouldBe(-32602);
        response.Text.ShouldNotContain("ModelContextProtocol");
    }
}
