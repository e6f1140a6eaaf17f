using System.Net;
using System.Text.Json.Nodes;
using Alba;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using JasperFx.Events;
using JasperFx.Events.Projections;
using Marten;
using Marten.Events;
using Marten.Events.Aggregation;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>A read model in its next shape, built beside today's (ADR 0029).</summary>
public sealed class SourceCard
{
    public Guid Id { get; set; }
    public string Title { get; set; } = "";
    public int Tables { get; set; }
}

/// <summary>Version 2 of a projection: a new document (its own table) fed from the same events, async, so it builds
/// from the first event while version 1 keeps serving; its progress is tracked under its own versioned name.</summary>
public sealed partial class SourceCardProjection : SingleStreamProjection<SourceCard, Guid>
{
    public SourceCardProjection()
    {
        Name = "SourceCard";
        Version = 2;
    }

    public static SourceCard Create(SourceCreated e) => new() { Id = e.SourceId, Title = $"{e.SourceType} {e.Prefix}".Trim(), Tables = e.TableCount };

    public static void Apply(SourceUpdated e, SourceCard card) => card.Title = $"{card.Title.Split(' ')[0]} {e.Prefix}".Trim();

    public static bool ShouldDelete(SourceDeleted e) => true;
}

/// <summary>
/// Blue/green for a projection's shape (ADR 0029): a service started with the new version beside the old builds it
/// from the whole history in the background. The old read model answers every read meanwhile, unchanged, and the new
/// one reaches the high-water mark under its own versioned progression, ready for the reads to move to it.
/// </summary>
public sealed class when_a_projection_changes_shape(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task the_new_version_builds_beside_the_old_one_which_keeps_serving()
    {
        var schema = $"edbg_{Guid.NewGuid():N}"[..20];
        var settings = new Dictionary<string, string> { ["ExternalData:Database:Schema"] = schema };
        string[] ids;
        string before;
        await using (var blue = await App.StartHostAsync(allowPrivateHosts: true, settings: settings))
        {
            var api = new ApiClient(blue.Server.CreateClient(), await AppFixture.IssueKeyAsync(blue, "blue", Scopes.All, [ApiKey.AllProjects]));
            ids = new string[3];
            for (var n = 0; n < ids.Length; n++)
                ids[n] = (await api.PostAsync(Sources, CreateBody(prefix: $"bg_{n}"))).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
            await api.PatchAsync(SourceUrl(ids[0]), new JsonObject { ["description"] = "renamed later" });
            (await api.DeleteAsync(SourceUrl(ids[2]))).ShouldHaveStatus(HttpStatusCode.NoContent);
            // The sources' first runs end, and arm their tables' next runs (a moment after a run's end), before the snapshot:
            // version 1 must then serve exactly this (the settled condition of RunsSettledAsync, over the list).
            var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
            while ((await api.GetAsync(Sources)).Json["results"]!.AsArray().Any(r => r!["last_run_at"] is null || r["status"]!.GetValue<string>() == "Running"
                       || r["schemas"]!.AsArray().Any(t => t!["should_sync"]!.GetValue<bool>() && t["status"]?.GetValue<string>() is "Completed" or "Failed"
                                                          && t["next_sync_at"] is null)))
            {
                DateTimeOffset.UtcNow.ShouldBeLessThan(deadline, "the first runs end");
                await Task.Delay(100);
            }

            before = (await api.GetAsync(Sources)).Json.ToJsonString();
        }

        // Green: the same service with version 2 added, async, over the same database.
        await using var green = await App.StartHostAsync(allowPrivateHosts: true,
            services => services.ConfigureMarten(o =>
            {
                o.Projections.Add(new SourceCardProjection(), ProjectionLifecycle.Async);
                o.Schema.For<SourceCard>().MultiTenanted();
            }), settings);
        var greenApi = new ApiClient(green.Server.CreateClient(), await AppFixture.IssueKeyAsync(green, "green", Scopes.All, [ApiKey.AllProjects]));
        (await greenApi.GetAsync(Sources)).Json.ToJsonString().ShouldBe(before, "version 1 serves unchanged while version 2 builds");

        var store = green.Services.GetRequiredService<IDocumentStore>();
        await store.WaitForNonStaleProjectionDataAsync(TimeSpan.FromSeconds(60));
        await using (var session = store.QuerySession(ProjectId))
        {
            var cards = await session.Query<SourceCard>().ToListAsync();
            cards.Select(c => c.Id.ToString()).Order().ShouldBe(ids.Take(2).Order(), "the deleted source has no card");
            cards.ShouldAllBe(c => c.Tables == PublicTables);
        }

        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var progress = new NpgsqlCommand($"SELECT name FROM {schema}.mt_event_progression WHERE name LIKE 'SourceCard%'", connection);
        var name = (string)(await progress.ExecuteScalarAsync())!;
        name.ShouldContain("V2", Case.Insensitive);
        (await greenApi.GetAsync(Sources)).Json.ToJsonString().ShouldBe(before);
    }
}
