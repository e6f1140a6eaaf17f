using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Audit;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using JasperFx.Events.Daemon;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Audit;

/// <summary>The audit feed is an async projection: it converges on every event of the project after a burst of writes
/// and after a rebuild, and its lag shows in /health/ready.</summary>
public sealed class when_reading_the_project_audit_feed(AppFixture app) : IntegrationContext(app)
{
    private string FeedUrl => $"{Sources}audit_log/";

    private async Task<JsonNode> ConvergedFeedAsync(long events, string query = "?limit=1000")
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        JsonNode feed;
        do
        {
            feed = (await Api.GetAsync(FeedUrl + query)).ShouldHaveStatus(HttpStatusCode.OK).Json;
            if (feed["count"]!.GetValue<long>() >= events) return feed;
            await Task.Delay(100);
        } while (DateTimeOffset.UtcNow < deadline);

        return feed;
    }

    [Fact]
    public async Task it_converges_on_every_event_after_a_burst_and_after_a_rebuild()
    {
        var canary = $"canary-{Guid.NewGuid():N}";
        var sources = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => Api.PostAsync(Sources, CreateBody(prefix: $"burst_{i}"))));
        var ids = sources.Select(r => r.ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>()).ToList();
        await Task.WhenAll(ids.SelectMany(id => Enumerable.Range(0, 5).Select(i => Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = $"burst {i}" }))));
        (await Api.PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = await CanaryConfigAsync(canary) }))
            .ShouldHaveStatus(HttpStatusCode.Created);
        (await Api.DeleteAsync(SourceUrl(ids[0]))).ShouldHaveStatus(HttpStatusCode.NoContent);
        var events = await EventCountAsync();

        var feed = await ConvergedFeedAsync(events);
        feed["count"]!.GetValue<long>().ShouldBe(events);
        var entries = feed["results"]!.AsArray().Select(e => e!).ToList();
        entries[0]["type"]!.GetValue<string>().ShouldBe("source_deleted", "newest first");
        entries.ShouldContain(e => e["type"]!.GetValue<string>() == "credentials_stashed" && e["data"]!["payload"]!.GetValue<string>() == "[secret]");
        entries.Select(e => e["source_id"]!.GetValue<string>()).Distinct().Count().ShouldBe(4, "three sources and one stash");
        (await Api.GetAsync(FeedUrl)).Text.ShouldNotContain(canary);

        (await Api.GetAsync($"{FeedUrl}?type=source_updated")).Json["count"]!.GetValue<long>().ShouldBe(15);
        (await Api.GetAsync($"{FeedUrl}?actor=test-admin&created_via=api")).Json["count"]!.GetValue<long>().ShouldBe(events);
        (await Api.GetAsync($"{FeedUrl}?created_via=mcp")).Json["count"]!.GetValue<long>().ShouldBe(0);
        (await Api.GetAsync($"{FeedUrl}?until=2000-01-01T00:00:00Z")).Json["count"]!.GetValue<long>().ShouldBe(0);

        var ready = (await Api.GetAsync("/health/ready")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        ready["checks"]!["projections"]!["data"]!["audit_log_lag"].ShouldNotBeNull();

        var before = entries.Select(e => e.ToJsonString()).ToList();
        using (var daemon = await App.Host.Services.GetRequiredService<IDocumentStore>().BuildProjectionDaemonAsync())
            await daemon.RebuildProjectionAsync(AuditLogProjection.ProjectionName, CancellationToken.None);
        var rebuilt = await ConvergedFeedAsync(events);
        rebuilt["results"]!.AsArray().Select(e => e!.ToJsonString()).ShouldBe(before);
        await AssertNowhereStoredAsync(canary);
    }
}
