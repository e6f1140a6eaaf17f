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
        // Their first runs end before the rebuild below: a rebuild while runs append is not what this test is about.
        foreach (var id in ids) await RunsSettledAsync(id);
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

        // Another project's feed holds none of this project's entries, though the index and the events are one table each.
        var otherProject = (int.Parse(ProjectId, System.Globalization.CultureInfo.InvariantCulture) - 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var outsider = App.Client(await App.IssueKeyAsync("audit-outsider", ExternalData.EventSourced.Infrastructure.Auth.Scopes.All, [otherProject]));
        var theirs = (await outsider.GetAsync($"/api/projects/{otherProject}/external_data_sources/audit_log/?limit=1000")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        theirs["results"]!.AsArray().Select(e => e!["source_id"]!.GetValue<string>()).ShouldNotContain(ids[0]);
        (await outsider.GetAsync(FeedUrl)).ShouldHaveStatus(HttpStatusCode.NotFound);

        var ready = (await Api.GetAsync("/health/ready")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        ready["checks"]!["projections"]!["data"]!["audit_log_lag"].ShouldNotBeNull();

        var before = entries.Select(e => e.ToJsonString()).ToList();
        using (var daemon = await App.Host.Services.GetRequiredService<IDocumentStore>().BuildProjectionDaemonAsync())
            await daemon.RebuildProjectionAsync(AuditLogProjection.ProjectionName, CancellationToken.None);
        var rebuilt = await ConvergedFeedAsync(events);
        rebuilt["results"]!.AsArray().Select(e => e!.ToJsonString()).ShouldBe(before);
        await AssertNowhereStoredAsync(canary);
    }

    /// <summary>What an auditor is promised: the feed's order is the event store's (each source's events in the order they
    /// were committed), and whatever it shows is a gap-free prefix of that order, its count included, while writers run.</summary>
    [Fact]
    public async Task every_read_under_concurrent_writers_is_a_gap_free_prefix_of_the_stores_order()
    {
        var ids = new List<string>();
        foreach (var i in Enumerable.Range(0, 4)) ids.Add((await CreateSourceAsync(prefix: $"order_{i}"))["id"]!.GetValue<string>());

        var writers = Task.WhenAll(ids.Select(async id =>
        {
            for (var i = 0; i < 8; i++) (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = $"write {i}" })).ShouldHaveStatus(HttpStatusCode.OK);
        }));
        var reads = new List<(long Count, List<long> Sequences)>();
        while (!writers.IsCompleted)
        {
            var feed = (await Api.GetAsync(FeedUrl + "?limit=1000")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            reads.Add((feed["count"]!.GetValue<long>(), feed["results"]!.AsArray().Select(e => e!["sequence"]!.GetValue<long>()).Reverse().ToList()));
            await Task.Delay(15);
        }

        await writers;
        var stored = await StoredSequencesAsync();
        var final = await ConvergedFeedAsync(stored.Count);
        var finalSequences = final["results"]!.AsArray().Select(e => e!["sequence"]!.GetValue<long>()).Reverse().ToList();
        finalSequences.ShouldBe(stored, "the feed, oldest first, is the store's order exactly");

        reads.Count.ShouldBeGreaterThan(1, "the feed was read while the writers ran");
        foreach (var (count, sequences) in reads)
        {
            sequences.ShouldBe(stored.Take(sequences.Count), "a read never shows an event before an earlier one");
            count.ShouldBe(sequences.Count, "a page and its count are one snapshot");
        }

        // Per source, the order is the order its writes were committed: its versions, one after another.
        foreach (var source in final["results"]!.AsArray().GroupBy(e => e!["source_id"]!.GetValue<string>()))
        {
            var versions = source.Select(e => e!["version"]!.GetValue<long>()).Reverse().ToList();
            versions.ShouldBe(Enumerable.Range(1, versions.Count).Select(v => (long)v), $"source {source.Key}");
        }
    }

    private async Task<List<long>> StoredSequencesAsync()
    {
        await using var connection = new Npgsql.NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            $"SELECT seq_id FROM {App.Schema}.mt_events WHERE tenant_id = @tenant AND type <> 'tombstone' AND type NOT LIKE 'sync\\_%' ORDER BY seq_id", connection);
        command.Parameters.AddWithValue("tenant", ProjectId);
        var sequences = new List<long>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) sequences.Add(reader.GetInt64(0));
        return sequences;
    }
}
