using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Concurrency;

/// <summary>
/// A caller that did not send If-Match never sees a 409 for the service's own race: writes to one source are
/// serialised. A caller that did send one gets exactly one winner and <c>stale_version</c> for the rest.
/// </summary>
public sealed class when_writes_race_on_one_source(AppFixture app) : IntegrationContext(app)
{
    private const int Racers = 16;

    [Fact]
    public async Task sixteen_patches_without_if_match_all_succeed_and_the_stream_stays_contiguous()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        var responses = await Task.WhenAll(Enumerable.Range(0, Racers).Select(i =>
            Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = $"racer {i}" })));

        responses.Select(r => r.Status).ShouldAllBe(s => s == HttpStatusCode.OK, string.Join(", ", responses.Select(r => $"{(int)r.Status} {r.Text}")));
        // Each write saw the one before it: every answer names a different version, one after another.
        responses.Select(r => r.Json["version"]!.GetValue<int>()).Order().ShouldBe(Enumerable.Range(CreatedVersion + 1, Racers));
        (await StreamVersionsAsync(id)).ShouldBe(Enumerable.Range(1, CreatedVersion + Racers).Select(v => (long)v));
        var final = (await Api.GetAsync(SourceUrl(id))).Json;
        final["version"]!.GetValue<int>().ShouldBe(CreatedVersion + Racers);
    }

    [Fact]
    public async Task sixteen_patches_with_the_same_if_match_have_one_winner_and_fifteen_stale_versions()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var ifMatch = new Dictionary<string, string> { ["If-Match"] = CreatedVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) };

        var responses = await Task.WhenAll(Enumerable.Range(0, Racers).Select(i =>
            Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = $"racer {i}" }, ifMatch)));

        responses.Count(r => r.Status == HttpStatusCode.OK).ShouldBe(1);
        var conflicts = responses.Where(r => r.Status != HttpStatusCode.OK).ToList();
        conflicts.Count.ShouldBe(Racers - 1);
        conflicts.ShouldAllBe(r => r.Status == HttpStatusCode.Conflict && r.ContentType == "application/problem+json" && r.Json["code"]!.GetValue<string>() == "stale_version");
        (await StreamVersionsAsync(id)).ShouldBe(Enumerable.Range(1, CreatedVersion + 1).Select(v => (long)v));
    }

    [Fact]
    public async Task sixteen_bulk_updates_without_if_match_all_succeed_and_each_lands()
    {
        var source = await CreateSourceAsync();
        var id = source["id"]!.GetValue<string>();
        var orders = source["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "orders")!["id"]!.GetValue<string>();
        var lookbacks = Enumerable.Range(1, Racers).Select(i => i * 60).ToList();

        var responses = await Task.WhenAll(lookbacks.Select(seconds => Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/",
            new JsonObject { ["schemas"] = new JsonArray(new JsonObject { ["id"] = orders, ["incremental_field_lookback_seconds"] = seconds }) })));

        responses.Select(r => r.Status).ShouldAllBe(s => s == HttpStatusCode.OK, string.Join(", ", responses.Select(r => $"{(int)r.Status} {r.Text}")));
        // Every batch changed the value the one before it left, so each is one event.
        (await StreamVersionsAsync(id)).ShouldBe(Enumerable.Range(1, CreatedVersion + Racers).Select(v => (long)v));
    }

    [Fact]
    public async Task sixteen_bulk_updates_with_the_same_if_match_have_one_winner()
    {
        var source = await CreateSourceAsync();
        var id = source["id"]!.GetValue<string>();
        var orders = source["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "orders")!["id"]!.GetValue<string>();
        var ifMatch = new Dictionary<string, string> { ["If-Match"] = $"\"{CreatedVersion}\"" };

        var responses = await Task.WhenAll(Enumerable.Range(1, Racers).Select(i => Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/",
            new JsonObject { ["schemas"] = new JsonArray(new JsonObject { ["id"] = orders, ["incremental_field_lookback_seconds"] = i * 60 }) }, ifMatch)));

        responses.Count(r => r.Status == HttpStatusCode.OK).ShouldBe(1);
        responses.Where(r => r.Status != HttpStatusCode.OK)
            .ShouldAllBe(r => r.Status == HttpStatusCode.Conflict && r.Json["code"]!.GetValue<string>() == "stale_version");
        (await StreamVersionsAsync(id)).Count.ShouldBe(CreatedVersion + 1);
    }

    [Fact]
    public async Task a_delete_racing_patches_leaves_every_patch_either_applied_before_it_or_answered_404()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        var patches = Enumerable.Range(0, 8).Select(i => Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = $"racer {i}" })).ToList();
        var delete = Api.DeleteAsync(SourceUrl(id));
        var all = await Task.WhenAll([.. patches, delete]);

        (await delete).Status.ShouldBe(HttpStatusCode.NoContent);
        all.ShouldAllBe(r => r.Status == HttpStatusCode.OK || r.Status == HttpStatusCode.NoContent || r.Status == HttpStatusCode.NotFound);
        var versions = await StreamVersionsAsync(id);
        versions.ShouldBe(Enumerable.Range(1, versions.Count).Select(v => (long)v));
        versions.Count.ShouldBe(CreatedVersion + 1 + all.Count(r => r.Status == HttpStatusCode.OK));
    }
}
