using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>An enabled table runs by itself within seconds of being enabled, then on its schedule (SYNC.md §5); the schemas
/// viewset (SYNC.md §6) lists, shows, changes, runs, resyncs, cancels and empties one schema, recorded with the user.</summary>
public sealed class when_schemas_run_on_their_own_and_on_request(AppFixture app) : SyncContext(app, Tables, "sched")
{
    private const string Tables = """
        CREATE TABLE public.accounts (id bigint PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO public.accounts SELECT g, 'account ' || g, '2024-01-01'::timestamptz + g * interval '1 hour' FROM generate_series(1, 500) g;
        CREATE TABLE public.ledger (id bigint PRIMARY KEY, amount int);
        INSERT INTO public.ledger SELECT g, g FROM generate_series(1, 20000) g;
        """;

    private SyncRunSettings Settings => App.Host.Services.GetRequiredService<SyncRunSettings>();
    private string Schemas => $"/api/projects/{ProjectId}/external_data_schemas/";

    public override async Task DisposeAsync()
    {
        Settings.AfterBatchCommitted = null;
        await base.DisposeAsync();
    }

    private async Task<JsonNode> SchemaAsync(string sourceId, string name) =>
        (await Api.GetAsync(SourceUrl(sourceId))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == name)!;

    [Fact]
    public async Task an_enabled_table_runs_by_itself_then_is_scheduled_and_a_table_enabled_later_runs_too()
    {
        var id = await CreateAsync("auto", FullRefresh("accounts"));
        var first = FirstRun(id);
        first["status"]!.GetValue<string>().ShouldBe("Completed", first.ToJsonString());
        first["trigger"]!.GetValue<string>().ShouldBe("create");
        first["created_by"]!.GetValue<string>().ShouldBe("system:scheduler", "the service's scheduler started it, not the user");
        await ShouldMatchAsync("public.accounts", "autopostgres_accounts", "id", "name");

        // Armed for one interval (6 hours by default) after the run started.
        var deadline = DateTimeOffset.UtcNow.AddSeconds(30);
        JsonNode accounts;
        while ((accounts = await SchemaAsync(id, "accounts"))["next_sync_at"] is null && DateTimeOffset.UtcNow < deadline) await Task.Delay(100);
        var next = accounts["next_sync_at"]!.GetValue<DateTimeOffset>();
        (next - accounts["last_synced_at"]!.GetValue<DateTimeOffset>()).ShouldBe(TimeSpan.FromHours(6), TimeSpan.FromSeconds(1));

        // Enabling another table through a bulk update starts its first run too.
        var ledgerId = (await SchemaAsync(id, "ledger"))["id"]!.GetValue<string>();
        (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
        {
            ["schemas"] = new JsonArray(new JsonObject { ["id"] = ledgerId, ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
        })).ShouldHaveStatus(HttpStatusCode.OK);
        var jobs = await JobsWhenDoneAsync(id, 1);
        jobs.ShouldContain(j => j["schema"]!["name"]!.GetValue<string>() == "ledger" && j["status"]!.GetValue<string>() == "Completed");
        (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.autopostgres_ledger")).ShouldBe(20000);
    }

    [Fact]
    public async Task the_schemas_viewset_lists_shows_and_changes_a_schema_by_the_bulk_update_rules()
    {
        var id = await CreateAsync("viewset", FullRefresh("accounts"));

        var list = (await Api.GetAsync($"{Schemas}?search=ACCOUNT")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        list["count"]!.GetValue<long>().ShouldBe(1);
        var listed = list["results"]![0]!;
        listed["name"]!.GetValue<string>().ShouldBe("accounts");
        listed["status"]!.GetValue<string>().ShouldBe("Completed");
        listed["table"]!["row_count"]!.GetValue<long>().ShouldBe(500);
        var schemaId = listed["id"]!.GetValue<string>();

        var one = (await Api.GetAsync($"{Schemas}{schemaId}/")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        one["source"]!["id"]!.GetValue<string>().ShouldBe(id);
        one["source"]!["source_type"]!.GetValue<string>().ShouldBe("Postgres");
        (await Api.GetAsync($"/api/projects/{ProjectId}0/external_data_schemas/{schemaId}/")).Status.ShouldBe(HttpStatusCode.NotFound);
        (await Api.GetAsync($"{Schemas}{Guid.NewGuid()}/")).Status.ShouldBe(HttpStatusCode.NotFound);

        var changed = (await Api.PatchAsync($"{Schemas}{schemaId}/", new JsonObject
        {
            ["sync_type"] = "incremental", ["incremental_field"] = "updated_at", ["incremental_field_type"] = "timestamp", ["sync_frequency"] = "12hour",
        })).ShouldHaveStatus(HttpStatusCode.OK).Json;
        changed["sync_type"]!.GetValue<string>().ShouldBe("incremental");
        changed["sync_frequency"]!.GetValue<string>().ShouldBe("12hour");
        (await Api.PatchAsync($"{Schemas}{schemaId}/", new JsonObject { ["sync_frequency"] = "1min" }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "A 1-minute sync frequency is only available for CDC schemas. The fastest frequency for other sync types is 5 minutes.");

        var probe = (await Api.PostAsync($"{Schemas}{schemaId}/incremental_fields/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK).Json;
        probe["incremental_fields"]!.AsArray().Select(f => f!["field"]!.GetValue<string>()).ShouldContain("updated_at");
        probe["full_refresh_available"]!.GetValue<bool>().ShouldBeTrue();
        probe["xmin_available"]!.GetValue<bool>().ShouldBeTrue();
    }

    [Fact]
    public async Task reload_cancel_resync_and_delete_data_act_on_one_schema_as_the_user()
    {
        Settings.PageSize = 1000;
        try
        {
            var id = await CreateAsync("acts", FullRefresh("ledger"));
            var schemaId = (await SchemaAsync(id, "ledger"))["id"]!.GetValue<string>();
            var version = (await Api.GetAsync(SourceUrl(id))).Json["version"]!.GetValue<int>();

            (await Api.PostAsync($"{Schemas}{schemaId}/cancel/", new JsonObject())).ShouldBeProblem(HttpStatusCode.BadRequest, "No running sync to cancel.");

            // A run held after its first batch, cancelled while it runs: it stops, and the last table stays as it was.
            var held = new TaskCompletionSource();
            Settings.AfterBatchCommitted = async (_, batch) => { if (batch == 1) await held.Task.WaitAsync(TimeSpan.FromSeconds(30)); };
            (await Api.PostAsync($"{Schemas}{schemaId}/reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
            await WaitForAsync(async () => (await SchemaAsync(id, "ledger"))["status"]!.GetValue<string>() == "Running");
            (await Api.PostAsync($"{Schemas}{schemaId}/cancel/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
            held.SetResult();
            var cancelled = (await JobsWhenDoneAsync(id, 1))[0];
            cancelled["status"]!.GetValue<string>().ShouldBe("Cancelled");
            cancelled["trigger"]!.GetValue<string>().ShouldBe("manual");
            (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.actspostgres_ledger")).ShouldBe(20000, "the previous table, untouched");
            Settings.AfterBatchCommitted = null;

            (await Api.PostAsync($"{Schemas}{schemaId}/resync/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
            var resync = (await JobsWhenDoneAsync(id, 2))[0];
            resync["trigger"]!.GetValue<string>().ShouldBe("resync");
            resync["mode"]!.GetValue<string>().ShouldBe("full");
            resync["status"]!.GetValue<string>().ShouldBe("Completed");
            (await Api.GetAsync(SourceUrl(id))).Json["version"]!.GetValue<int>().ShouldBe(version, "runs, cancels and resyncs never move the source's version");

            (await Api.DeleteAsync($"{Schemas}{schemaId}/delete_data/")).ShouldHaveStatus(HttpStatusCode.OK);
            await WaitForAsync(async () => await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{Warehouse}' AND tablename = 'actspostgres_ledger'") == 0);
            var emptied = await SchemaAsync(id, "ledger");
            emptied["table"].ShouldBeNull();
            emptied["should_sync"]!.GetValue<bool>().ShouldBeFalse("the schema stays, disabled");

            // Who did what: the user, over the API, on the schema's sync stream.
            var reader = App.Client(await App.IssueKeyAsync("schema-reader", [Scopes.Read], [ProjectId]));
            (await reader.PostAsync($"{Schemas}{schemaId}/reload/", new JsonObject())).Status.ShouldBe(HttpStatusCode.Forbidden);
            (await Api.PostAsync($"/api/projects/{ProjectId}0/external_data_schemas/{schemaId}/reload/", new JsonObject())).Status.ShouldBe(HttpStatusCode.NotFound);
            (await EventTypesAsync(schemaId)).ShouldContain("sync_run_cancelled");

            // The source's history shows its runs when asked, in the order they were recorded; by default its own facts only.
            var withSyncs = (await Api.GetAsync($"{SourceUrl(id)}history/?include=syncs&limit=1000")).ShouldHaveStatus(HttpStatusCode.OK).Json["results"]!.AsArray();
            var types = withSyncs.Select(e => e!["type"]!.GetValue<string>()).ToList();
            types.ShouldContain("sync_run_cancelled");
            types.ShouldContain("sync_state_reset");
            types[0].ShouldBe("source_created");
            withSyncs.Single(e => e!["type"]!.GetValue<string>() == "sync_run_cancelled")!["actor"]!["name"]!.GetValue<string>().ShouldBe("test-admin");
            // By default: the source's own facts and what users did to its syncs, not what the service did on its own.
            var history = (await Api.GetAsync($"{SourceUrl(id)}history/?limit=1000")).Json;
            var userActions = history["results"]!.AsArray().Where(e => e!["type"]!.GetValue<string>().StartsWith("sync_")).ToList();
            userActions.Select(e => e!["type"]!.GetValue<string>()).ShouldBe(
                ["sync_run_started", "sync_run_cancelled", "sync_state_reset", "sync_run_started", "sync_state_reset"], "reload, cancel, resync (a reset and a start), delete_data");
            userActions.ShouldAllBe(e => e!["created_via"]!.GetValue<string>() == "api" && e["actor"]!["name"]!.GetValue<string>() == "test-admin");
            history["count"]!.GetValue<long>().ShouldBe(history["results"]!.AsArray().Count);
            (await Api.GetAsync($"{SourceUrl(id)}history/?type=sync_run_cancelled")).Json["count"]!.GetValue<long>().ShouldBe(1);
            (await Api.GetAsync($"{SourceUrl(id)}history/?include=everything")).ShouldBeProblem(HttpStatusCode.BadRequest, "include must be 'syncs'.", "include");
        }
        finally
        {
            Settings.PageSize = 50_000;
        }
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException("condition not met");
            await Task.Delay(50);
        }
    }
}
