using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>Deleting a source stops its runs first (SYNC.md §5, issue 20): the delete cancels them in its own transaction,
/// as the user who deleted it, and a run stops at its next batch boundary without another batch or a leftover table.</summary>
public sealed class when_a_source_is_deleted_mid_run(AppFixture app) : SyncContext(app, Tables, "deleted")
{
    private const string Tables = """
        CREATE TABLE public.big (id bigint PRIMARY KEY, label text);
        INSERT INTO public.big SELECT g, 'row ' || g FROM generate_series(1, 3000) g;
        ANALYZE public.big;
        """;

    [Fact]
    public async Task its_running_sync_is_cancelled_by_the_delete_and_stops_at_the_next_batch()
    {
        var settings = App.Host.Services.GetRequiredService<SyncRunSettings>();
        var id = await CreateAsync("doomed", FullRefresh("big"));
        using var held = new SemaphoreSlim(0);
        using var release = new SemaphoreSlim(0);
        settings.PageSize = 500;
        settings.AfterBatchCommitted = async (_, batch) =>
        {
            if (batch != 1) return;
            held.Release();
            await release.WaitAsync(TimeSpan.FromSeconds(60));
        };
        Guid jobId;
        try
        {
            (await Api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
            (await held.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBeTrue("the run committed its first batch");
            jobId = Guid.Parse((await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray()[0]!["id"]!.GetValue<string>());
            (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);
        }
        finally
        {
            release.Release();
            settings.AfterBatchCommitted = null;
            settings.PageSize = 50_000;
        }

        var store = App.Host.Services.GetRequiredService<IDocumentStore>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        SyncJob? job;
        while (true)
        {
            await using (var session = store.QuerySession(ProjectId)) job = await session.LoadAsync<SyncJob>(jobId);
            if (job!.Status != "Running" || DateTime.UtcNow > deadline) break;
            await Task.Delay(100);
        }

        job.Status.ShouldBe("Cancelled");
        job.LatestError.ShouldBe("Cancelled: the source was deleted.");
        await Task.Delay(500);
        await using (var session = store.QuerySession(ProjectId))
        {
            (await session.LoadAsync<SyncJob>(jobId))!.Batches.ShouldBe(1, "no batch after the delete");
            var events = await session.Events.FetchStreamAsync(jobId);
            events.Select(e => e.Data).OfType<SyncJobCancelled>().ShouldHaveSingleItem().CancelledBy.Name.ShouldBe("test-admin");
        }

        (await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{Warehouse}' AND tablename LIKE '\\_stage\\_%'")).ShouldBe(0, "the run's staging table is gone");
    }
}
