using System.Net;
using System.Text.Json.Nodes;
using Alba;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>
/// With <c>ConnectionStrings:Warehouse</c> set, rows land in that database, not the service's (SYNC.md §1), and a page is
/// still neither lost nor repeated when the service dies after the warehouse committed it and before its events did:
/// the next run starts from the warehouse's own mark (ADR 0044). A service of its own here (its own event store schema),
/// so its runs and hooks touch nothing of the suite's.
/// </summary>
public sealed class when_the_warehouse_is_a_database_of_its_own(AppFixture app) : SyncContext(app, Tables, "own")
{
    private const string Tables = """
        CREATE TABLE public.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, name text);
        INSERT INTO public.events SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute', 'e' || g FROM generate_series(1, 2500) g;
        """;

    private ScratchDatabase _warehouse = null!;
    private IAlbaHost _host = null!;
    private ApiClient _api = null!;

    private string OwnWarehouse => App.Server.ConnectionStringFor(_warehouse.Name);

    private async Task StartAsync()
    {
        _warehouse = await ScratchDatabase.CreateAsync(App.Server, "SELECT 1", "wh");
        _host = await App.StartHostAsync(allowPrivateHosts: true, settings: new Dictionary<string, string>
        {
            ["ConnectionStrings:Warehouse"] = OwnWarehouse,
            ["ExternalData:Database:Schema"] = $"edown_{Guid.NewGuid():N}"[..20],
            ["Sync:PageSize"] = "1000",
        });
        _api = new ApiClient(_host.Server.CreateClient(), await AppFixture.IssueKeyAsync(_host, "own-admin", Scopes.All, [ProjectId]));
    }

    public override async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _warehouse.DropAsync();
        await base.DisposeAsync();
    }

    private async Task<List<JsonNode>> JobsAsync(string id, int count)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        while (true)
        {
            var jobs = (await _api.GetAsync($"{SourceUrl(id)}jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().Select(j => j!).ToList();
            if (jobs.Count >= count && jobs.All(j => j["status"]!.GetValue<string>() != "Running")) return jobs;
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException(string.Join(", ", jobs.Select(j => j.ToJsonString())));
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task rows_land_there_and_a_page_committed_before_its_events_is_not_appended_twice()
    {
        await StartAsync();
        var settings = _host.Services.GetRequiredService<SyncRunSettings>();
        var payload = Db.Config();
        payload["schemas"] = new JsonArray(new JsonObject
        {
            ["name"] = "events", ["should_sync"] = true, ["sync_type"] = "append", ["incremental_field"] = "created_at", ["incremental_field_type"] = "timestamp",
        });
        var id = (await _api.PostAsync(Sources, new JsonObject { ["source_type"] = "Postgres", ["prefix"] = "own", ["payload"] = payload }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        (await JobsAsync(id, 1))[0]["status"]!.GetValue<string>().ShouldBe("Completed");

        var table = $"warehouse_{ProjectId}.ownpostgres_events";
        (await RowsAsync(OwnWarehouse, table, ["id", "created_at", "name"])).ShouldBe(await RowsAsync(SourceConnection, "public.events", ["id", "created_at", "name"]));
        (await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{Warehouse}'")).ShouldBe(0, "nothing lands in the service's own database");

        // The service dies after the second page's rows committed in the warehouse, before its events did.
        await Db.ExecuteAsync("INSERT INTO public.events SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute', 'e' || g FROM generate_series(2501, 6000) g;");
        var pages = 0;
        settings.BetweenRowsAndEvents = _ => ++pages == 2 ? throw new IOException("died between the warehouse's commit and the events'") : Task.CompletedTask;
        (await _api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        (await JobsAsync(id, 2))[0]["status"]!.GetValue<string>().ShouldBe("Failed");
        settings.BetweenRowsAndEvents = null;

        (await _api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        var rerun = (await JobsAsync(id, 3))[0];
        rerun["status"]!.GetValue<string>().ShouldBe("Completed", rerun.ToJsonString());
        rerun["rows_synced"]!.GetValue<long>().ShouldBe(1500, "it starts after the second page, which the warehouse had already committed");
        (await RowsAsync(OwnWarehouse, table, ["id", "created_at", "name"])).ShouldBe(await RowsAsync(SourceConnection, "public.events", ["id", "created_at", "name"]),
            "every row once");
    }
}
