using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Schemas;

public sealed class when_probing_prefixes_and_listing_connections(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task source_prefix_answers_200_when_free_and_posthogs_texts_when_not()
    {
        var probe = $"{Sources}source_prefix/";
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Postgres", ["prefix"] = "prod" })).ShouldHaveStatus(HttpStatusCode.OK).Text.ShouldBeEmpty();
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Postgres" })).ShouldHaveStatus(HttpStatusCode.OK);

        await CreateSourceAsync(prefix: "prod");
        await CreateSourceAsync();
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Postgres", ["prefix"] = "prod" }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Prefix already exists", "prefix");
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Postgres" }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Source type already exists. Prefix is required", "prefix");
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Stripe", ["prefix"] = "prod" })).ShouldHaveStatus(HttpStatusCode.OK);
        // No character rules here, as PostHog: those belong to create.
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Postgres", ["prefix"] = "9-lives" })).ShouldHaveStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task source_prefix_without_source_type_is_a_400_not_a_500()
    {
        var probe = $"{Sources}source_prefix/";
        (await Api.PostAsync(probe, new JsonObject { ["prefix"] = "prod" }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Missing required parameter: source_type", "source_type");
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Oracle" }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Unknown source_type 'Oracle'", "source_type");
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Postgres", ["access_method"] = "direct", ["prefix"] = " " }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Name is required for direct query sources", "prefix");
        (await Api.PostAsync(probe, new JsonObject { ["source_type"] = "Stripe", ["access_method"] = "direct", ["prefix"] = "x" }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Direct query mode is currently supported only for Postgres, MySQL, and Snowflake sources.", "access_method");
    }

    [Fact]
    public async Task connections_lists_only_direct_query_sources_newest_first()
    {
        await CreateSourceAsync(prefix: "warehouse_one");
        var first = CreateBody(prefix: "Live A");
        first["access_method"] = "direct";
        var a = (await Api.PostAsync(Sources, first)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        var second = CreateBody(prefix: "Live B");
        second["access_method"] = "direct";
        var b = (await Api.PostAsync(Sources, second)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();

        var connections = (await Api.GetAsync($"{Sources}connections/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray();

        connections.Select(c => c!["id"]!.GetValue<string>()).ShouldBe([b, a]);
        connections[0]!.ToJsonString().ShouldBe($"{{\"id\":\"{b}\",\"prefix\":\"Live B\",\"engine\":\"duckdb\"}}");
    }
}
