using System.Net;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

public sealed class when_listing_and_retrieving_sources(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task lists_newest_first_with_pagination_links()
    {
        var first = (await CreateSourceAsync(prefix: "a_first"))["id"]!.GetValue<string>();
        var second = (await CreateSourceAsync(prefix: "b_second"))["id"]!.GetValue<string>();
        var third = (await CreateSourceAsync(prefix: "c_third"))["id"]!.GetValue<string>();

        var page1 = (await Api.GetAsync($"{Sources}?limit=2")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        page1["count"]!.GetValue<int>().ShouldBe(3);
        page1["results"]!.AsArray().Select(r => r!["id"]!.GetValue<string>()).ShouldBe([third, second]);
        page1["previous"].ShouldBeNull();
        var next = page1["next"]!.GetValue<string>();
        next.ShouldStartWith("http");
        next.ShouldContain("offset=2");

        var page2 = (await Api.GetAsync(new Uri(next).PathAndQuery)).Json;
        page2["results"]!.AsArray().Select(r => r!["id"]!.GetValue<string>()).ShouldBe([first]);
        page2["next"].ShouldBeNull();
        page2["previous"]!.GetValue<string>().ShouldContain("offset=0");
    }

    [Fact]
    public async Task search_matches_prefix_or_source_type_case_insensitively()
    {
        await CreateSourceAsync(prefix: "billing");
        await CreateSourceAsync(prefix: "marketing");

        (await Api.GetAsync($"{Sources}?search=BILL")).Json["results"]!.AsArray().Select(r => r!["prefix"]!.GetValue<string>()).ShouldBe(["billing"]);
        (await Api.GetAsync($"{Sources}?search=postgres")).Json["count"]!.GetValue<int>().ShouldBe(2);
        (await Api.GetAsync($"{Sources}?search=stripe")).Json["count"]!.GetValue<int>().ShouldBe(0);
    }

    [Fact]
    public async Task bad_paging_values_are_problems()
    {
        (await Api.GetAsync($"{Sources}?limit=abc")).ShouldBeProblem(HttpStatusCode.BadRequest, "limit must be a positive integer.", "limit");
        (await Api.GetAsync($"{Sources}?offset=-1")).ShouldBeProblem(HttpStatusCode.BadRequest, "offset must be a non-negative integer.", "offset");
    }

    [Fact]
    public async Task both_route_prefixes_and_an_optional_trailing_slash_reach_the_same_source()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        foreach (var url in new[]
                 {
                     $"/api/projects/{ProjectId}/external_data_sources/{id}/", $"/api/projects/{ProjectId}/external_data_sources/{id}",
                     $"/api/environments/{ProjectId}/external_data_sources/{id}/", $"/api/environments/{ProjectId}/external_data_sources/{id}",
                 })
        {
            (await Api.GetAsync(url)).ShouldHaveStatus(HttpStatusCode.OK).Json["id"]!.GetValue<string>().ShouldBe(id);
        }

        var list = (await Api.GetAsync($"/api/environments/{ProjectId}/external_data_sources?limit=1")).Json;
        list["count"]!.GetValue<int>().ShouldBe(1);
    }

    [Fact]
    public async Task an_id_that_is_not_a_uuid_or_unknown_answers_404()
    {
        (await Api.GetAsync($"{Sources}not-a-uuid/")).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await Api.GetAsync(SourceUrl(Guid.NewGuid().ToString()))).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
    }

    [Fact]
    public async Task as_of_replays_the_source_at_a_version_or_a_time()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        await Task.Delay(100);
        var between = DateTimeOffset.UtcNow;
        await Task.Delay(100);
        (await Api.PatchAsync(SourceUrl(id), new System.Text.Json.Nodes.JsonObject { ["description"] = "later" })).ShouldHaveStatus(HttpStatusCode.OK);

        (await Api.GetAsync($"{SourceUrl(id)}?as_of={CreatedVersion}")).Json["description"].ShouldBeNull();
        (await Api.GetAsync($"{SourceUrl(id)}?as_of={Uri.EscapeDataString(between.ToString("O"))}")).Json["version"]!.GetValue<int>().ShouldBe(CreatedVersion);
        (await Api.GetAsync($"{SourceUrl(id)}?as_of={CreatedVersion + 1}")).Json["description"]!.GetValue<string>().ShouldBe("later");
        (await Api.GetAsync($"{SourceUrl(id)}?as_of=yesterday")).ShouldBeProblem(HttpStatusCode.BadRequest,
            "as_of must be a stream version (a positive integer) or an ISO 8601 timestamp.", "as_of");
    }
}
