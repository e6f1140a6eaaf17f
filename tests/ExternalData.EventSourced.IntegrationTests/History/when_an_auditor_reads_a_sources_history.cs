using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.History;

/// <summary>A source's history: every event in order with who, how, which request, a sentence, and the data in the
/// API's casing with every secret masked. It outlives the source's deletion.</summary>
public sealed class when_an_auditor_reads_a_sources_history(AppFixture app) : IntegrationContext(app)
{
    private string HistoryUrl(string id) => $"{SourceUrl(id)}history/";

    [Fact]
    public async Task every_change_is_listed_in_order_with_actor_channel_summary_and_masked_secrets()
    {
        var canary = $"canary-{Guid.NewGuid():N}";
        var config = await CanaryConfigAsync(canary);
        var body = CreateBody(prefix: "audited", config: config);
        body["created_via"] = "mcp";
        var created = (await Api.SendAsync(HttpMethod.Post, Sources, body, new Dictionary<string, string> { ["X-Request-Id"] = "audit-create" }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json;
        var id = created["id"]!.GetValue<string>();
        var schemas = created["schemas"]!.AsArray().ToDictionary(s => s!["name"]!.GetValue<string>(), s => s!["id"]!.GetValue<string>());

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "audited copy", ["job_inputs"] = new JsonObject { ["password"] = canary } })).ShouldHaveStatus(HttpStatusCode.OK);
        (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
        {
            ["schemas"] = new JsonArray(
                new JsonObject { ["id"] = schemas["customers"], ["should_sync"] = true, ["sync_type"] = "full_refresh" },
                new JsonObject { ["id"] = schemas["events"], ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
        })).ShouldHaveStatus(HttpStatusCode.OK);
        (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);

        var page = (await Api.GetAsync($"{HistoryUrl(id)}?limit=1000")).ShouldHaveStatus(HttpStatusCode.OK);
        page.Text.ShouldNotContain(canary);
        var entries = page.Json["results"]!.AsArray().Select(e => e!).ToList();
        page.Json["count"]!.GetValue<int>().ShouldBe(CreatedVersion + 3);
        entries.Select(e => e["version"]!.GetValue<long>()).ShouldBe(Enumerable.Range(1, CreatedVersion + 3).Select(v => (long)v));
        entries.Select(e => e["type"]!.GetValue<string>()).Distinct().ShouldBe(["source_created", "schema_added", "source_updated", "schemas_bulk_updated", "source_deleted"]);

        var first = entries[0];
        first["summary"]!.GetValue<string>().ShouldBe($"Postgres source created with prefix 'audited', {PublicTables} tables discovered");
        first["created_via"]!.GetValue<string>().ShouldBe("mcp");
        first["correlation_id"]!.GetValue<string>().ShouldBe("audit-create");
        first["actor"]!["name"]!.GetValue<string>().ShouldBe("test-admin");
        first["actor"]!["id"]!.GetValue<string>().ShouldNotBeNullOrEmpty();
        first["data"]!["secrets"]!.GetValue<string>().ShouldBe("[secret]");
        first["data"]!["job_inputs"]!["host"]!.GetValue<string>().ShouldBe(App.Source.Host);
        entries.Single(e => e["type"]!.GetValue<string>() == "schema_added" && e["data"]!["name"]!.GetValue<string>() == "orders")["summary"]!
            .GetValue<string>().ShouldBe("table orders added, enabled for incremental sync");

        var updated = entries[CreatedVersion];
        updated["summary"]!.GetValue<string>().ShouldBe("description, job inputs changed");
        updated["data"]!["secrets"]!.GetValue<string>().ShouldBe("[secret]");
        updated["created_via"]!.GetValue<string>().ShouldBe("api");
        entries[CreatedVersion + 1]["summary"]!.GetValue<string>().ShouldBe("2 tables enabled for full refresh sync");
        entries[CreatedVersion + 2]["summary"]!.GetValue<string>().ShouldBe("source deleted; its secrets were destroyed");
        entries[CreatedVersion + 2]["data"]!["deleted_by"]!["name"]!.GetValue<string>().ShouldBe("test-admin");
    }

    [Fact]
    public async Task it_pages_filters_and_answers_404_for_another_project()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "one" })).ShouldHaveStatus(HttpStatusCode.OK);
        var between = DateTimeOffset.UtcNow;
        await Task.Delay(20);
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "two" })).ShouldHaveStatus(HttpStatusCode.OK);

        var paged = (await Api.GetAsync($"{HistoryUrl(id)}?limit=2&offset=2")).Json;
        paged["results"]!.AsArray().Select(e => e!["version"]!.GetValue<long>()).ShouldBe([3L, 4L]);
        paged["next"]!.GetValue<string>().ShouldContain("offset=4");
        paged["previous"]!.GetValue<string>().ShouldContain("offset=0");

        (await Api.GetAsync($"{HistoryUrl(id)}?type=source_updated")).Json["count"]!.GetValue<int>().ShouldBe(2);
        var since = (await Api.GetAsync($"{HistoryUrl(id)}?since={Uri.EscapeDataString(between.ToString("O"))}")).Json["results"]!.AsArray();
        since.ShouldHaveSingleItem()!["data"]!["description"]!.GetValue<string>().ShouldBe("two");
        (await Api.GetAsync($"{HistoryUrl(id)}?until={Uri.EscapeDataString(between.ToString("O"))}")).Json["count"]!.GetValue<int>().ShouldBe(CreatedVersion + 1);
        (await Api.GetAsync($"{HistoryUrl(id)}?since=yesterday")).ShouldBeProblem(HttpStatusCode.BadRequest, "since must be an ISO 8601 time.", "since");

        (await Api.GetAsync($"/api/projects/{ProjectId}1/external_data_sources/{id}/history/")).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await Api.GetAsync(HistoryUrl(Guid.NewGuid().ToString()))).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
    }
}
