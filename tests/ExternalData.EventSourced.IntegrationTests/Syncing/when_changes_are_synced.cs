using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>Runs that read only what changed (SYNC.md §3.2–§3.4): incremental merges by key with ties never lost, append
/// never repeats a row, xmin picks up updates of a table without a cursor, row filters apply at the source; and a run
/// killed after its second batch leaves the warehouse consistent, the next run exact. Batches are 1,000 rows here, so a
/// few thousand rows cross several batch boundaries.</summary>
public sealed class when_changes_are_synced(AppFixture app) : SyncContext(app, Tables, "delta")
{
    private const string Tables = """
        CREATE TABLE public.orders (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, status text);
        -- 500 rows before, 2,500 rows sharing one cursor value (across batch boundaries), 500 after.
        INSERT INTO public.orders SELECT g, '2024-01-01'::timestamptz + g * interval '1 second', 'early' FROM generate_series(1, 500) g;
        INSERT INTO public.orders SELECT g, '2024-02-01', 'tied' FROM generate_series(501, 3000) g;
        INSERT INTO public.orders SELECT g, '2024-02-01'::timestamptz + (g - 3000) * interval '1 second', 'late' FROM generate_series(3001, 3500) g;
        CREATE TABLE public.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, name text);
        INSERT INTO public.events SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute', 'e' || g FROM generate_series(1, 2500) g;
        CREATE TABLE public.plain (id int PRIMARY KEY, v text);
        INSERT INTO public.plain SELECT g, 'v' || g FROM generate_series(1, 3000) g;
        CREATE TABLE public.big (id bigint PRIMARY KEY, label text);
        INSERT INTO public.big SELECT g, 'row ' || g FROM generate_series(1, 5000) g;
        CREATE TABLE public.regions (id int PRIMARY KEY, region text, amount int);
        INSERT INTO public.regions SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 300) g;
        """;

    private SyncRunSettings Settings => App.Host.Services.GetRequiredService<SyncRunSettings>();

    private int _defaultPageSize;

    private async Task<string> CreateWithPagesAsync(string prefix, JsonObject schema)
    {
        _defaultPageSize = Settings.PageSize;
        Settings.PageSize = 1000;
        return await CreateAsync(prefix, schema);
    }

    public override async Task DisposeAsync()
    {
        if (_defaultPageSize > 0) Settings.PageSize = _defaultPageSize;
        Settings.AfterBatchCommitted = null;
        await base.DisposeAsync();
    }

    private static JsonObject Cursor(string table, string syncType, string field) => new()
    {
        ["name"] = table, ["should_sync"] = true, ["sync_type"] = syncType, ["incremental_field"] = field, ["incremental_field_type"] = "timestamp",
    };

    private async Task<long> DuplicateKeysAsync(string table) => await ScalarAsync($"SELECT count(*) - count(DISTINCT id) FROM {Warehouse}.{table}");

    /// <summary>The schema's table as the API shows it must count exactly the warehouse table's rows (a merge run keeps the
    /// count from the rows it inserts instead of counting the table).</summary>
    private async Task RowCountShouldBeExactAsync(string id, string schema, string table)
    {
        var shown = (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(System.Net.HttpStatusCode.OK).Json["schemas"]!.AsArray()
            .Single(s => s!["name"]!.GetValue<string>() == schema)!["table"]!["row_count"]!.GetValue<long>();
        shown.ShouldBe(await ScalarAsync($"SELECT count(*) FROM {Warehouse}.{table}"));
    }

    [Fact]
    public async Task incremental_runs_merge_by_key_and_never_lose_a_tie_at_the_watermark()
    {
        var id = await CreateWithPagesAsync("inc", Cursor("orders", "incremental", "updated_at"));
        var first = FirstRun(id);
        first["status"]!.GetValue<string>().ShouldBe("Completed", first.ToJsonString());
        first["mode"]!.GetValue<string>().ShouldBe("full", "the first run loads everything");
        await ShouldMatchAsync("public.orders", "incpostgres_orders", "id", "updated_at", "status");

        // More ties at the watermark's own value, rows moved past it, and new rows: 2,500 + 300 tied rows cross batch boundaries.
        await Db.ExecuteAsync("""
            INSERT INTO public.orders SELECT g, '2024-02-01'::timestamptz + 500 * interval '1 second', 'tied at the watermark' FROM generate_series(3501, 3800) g;
            UPDATE public.orders SET status = 'moved', updated_at = '2024-03-01' WHERE id IN (1, 600, 2999);
            INSERT INTO public.orders SELECT g, '2024-03-02'::timestamptz, 'new' FROM generate_series(3801, 4000) g;
            """);
        var second = (await ReloadAndWaitAsync(id, 1))[0];
        second["status"]!.GetValue<string>().ShouldBe("Completed", second.ToJsonString());
        second["mode"]!.GetValue<string>().ShouldBe("incremental");
        second["rows_synced"]!.GetValue<long>().ShouldBeLessThan(1000, "only rows at or after the watermark are read again");
        await ShouldMatchAsync("public.orders", "incpostgres_orders", "id", "updated_at", "status");
        (await DuplicateKeysAsync("incpostgres_orders")).ShouldBe(0);
        await RowCountShouldBeExactAsync(id, "orders", "incpostgres_orders");

        // A whole batch of ties read again from the start of the watermark: still exact, still one row per key.
        await Db.ExecuteAsync("UPDATE public.orders SET updated_at = '2024-04-01', status = 'all tied' WHERE id BETWEEN 100 AND 2600;");
        var third = (await ReloadAndWaitAsync(id, 2))[0];
        third["batches"]!.GetValue<int>().ShouldBe(1, "2,501 rows sharing one value are one batch: ties never straddle two");
        await ShouldMatchAsync("public.orders", "incpostgres_orders", "id", "updated_at", "status");
        (await DuplicateKeysAsync("incpostgres_orders")).ShouldBe(0);
        await RowCountShouldBeExactAsync(id, "orders", "incpostgres_orders");
    }

    [Fact]
    public async Task append_runs_add_each_row_once()
    {
        var id = await CreateWithPagesAsync("app", Cursor("events", "append", "created_at"));
        FirstRun(id)["rows_synced"]!.GetValue<long>().ShouldBe(2500);

        await Db.ExecuteAsync("INSERT INTO public.events SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute', 'e' || g FROM generate_series(2501, 4700) g;");
        var second = (await ReloadAndWaitAsync(id, 1))[0];
        second["mode"]!.GetValue<string>().ShouldBe("append");
        second["rows_synced"]!.GetValue<long>().ShouldBe(2200);
        second["batches"]!.GetValue<int>().ShouldBe(3);
        var third = (await ReloadAndWaitAsync(id, 2))[0];
        third["rows_synced"]!.GetValue<long>().ShouldBe(0, "nothing new upstream: nothing appended");

        (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.apppostgres_events")).ShouldBe(4700);
        await RowCountShouldBeExactAsync(id, "events", "apppostgres_events");
        await ShouldMatchAsync("public.events", "apppostgres_events", "id", "created_at", "name");
    }

    [Fact]
    public async Task xmin_runs_pick_up_updates_of_a_table_without_a_cursor()
    {
        var id = await CreateWithPagesAsync("xm", new JsonObject { ["name"] = "plain", ["should_sync"] = true, ["sync_type"] = "xmin" });
        var first = FirstRun(id);
        first["status"]!.GetValue<string>().ShouldBe("Completed", first.ToJsonString());

        await Db.ExecuteAsync("UPDATE public.plain SET v = 'changed' WHERE id % 500 = 0; INSERT INTO public.plain VALUES (5000, 'new'); DELETE FROM public.plain WHERE id = 1;");
        var second = (await ReloadAndWaitAsync(id, 1))[0];
        second["status"]!.GetValue<string>().ShouldBe("Completed", second.ToJsonString());
        second["mode"]!.GetValue<string>().ShouldBe("xmin");
        second["rows_synced"]!.GetValue<long>().ShouldBeLessThan(100, "only rows written since the last run are read");
        // xmin sees writes, not deletes: the deleted row stays, every other row is current.
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.xmpostgres_plain", ["id", "v"])).Where(r => r != "1|v1").ToList()
            .ShouldBe(await RowsAsync(SourceConnection, "public.plain", ["id", "v"]));
    }

    [Fact]
    public async Task an_xmin_ceiling_past_wraparound_makes_the_run_load_everything_and_say_so()
    {
        var id = await CreateWithPagesAsync("wrap", new JsonObject { ["name"] = "plain", ["should_sync"] = true, ["sync_type"] = "xmin" });
        var schemaId = Guid.Parse(FirstRun(id)["schema"]!["id"]!.GetValue<string>());

        // 2^31 transactions cannot be run here: the sync stream is given a ceiling that far back instead, as a run that long
        // ago would have recorded it (a run started and completed by the service).
        var store = App.Host.Services.GetRequiredService<Marten.IDocumentStore>();
        await using (var session = store.LightweightSession(ProjectId))
        {
            var job = Guid.CreateVersion7();
            var now = DateTimeOffset.UtcNow;
            var system = ExternalData.EventSourced.Shared.Actor.System("sync-runner");
            var state = await session.LoadAsync<SchemaSync>(schemaId);
            session.Events.Append(schemaId,
                new SyncRunStarted(schemaId, Guid.Parse(id), job, "plain", "xmin", "xmin", "schedule", system, "system", now),
                new SyncRunCompleted(schemaId, job, 0, state!.Table!, now, now, system, "system", XminCeiling: -(1L << 31)));
            await session.SaveChangesAsync();
        }

        await Db.ExecuteAsync("UPDATE public.plain SET v = 'after a long time' WHERE id <= 10;");
        var run = (await ReloadAndWaitAsync(id, 1))[0];
        run["status"]!.GetValue<string>().ShouldBe("Completed", run.ToJsonString());
        run["mode"]!.GetValue<string>().ShouldBe("full", "it planned xmin, and loaded everything instead");
        run["note"]!.GetValue<string>().ShouldContain("2^31");
        run["rows_synced"]!.GetValue<long>().ShouldBe(3000);
        await ShouldMatchAsync("public.plain", "wrappostgres_plain", "id", "v");
    }

    [Fact]
    public async Task a_run_killed_after_its_second_batch_leaves_the_last_table_and_the_rerun_is_exact()
    {
        var id = await CreateWithPagesAsync("killed", FullRefresh("big"));
        FirstRun(id)["status"]!.GetValue<string>().ShouldBe("Completed");
        await Db.ExecuteAsync("DELETE FROM public.big WHERE id > 4000; UPDATE public.big SET label = 'second run' WHERE id <= 10;");

        Settings.AfterBatchCommitted = (_, batch) => batch == 2 ? throw new IOException("killed after batch 2") : Task.CompletedTask;
        var killed = (await ReloadAndWaitAsync(id, 1))[0];
        killed["status"]!.GetValue<string>().ShouldBe("Failed");
        killed["batches"]!.GetValue<int>().ShouldBe(2);
        // The previous run's table, whole and readable; the half-written staging table is gone.
        (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.killedpostgres_big")).ShouldBe(5000);
        (await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{Warehouse}' AND tablename LIKE '\\_stage\\_%'")).ShouldBe(0);

        Settings.AfterBatchCommitted = null;
        (await ReloadAndWaitAsync(id, 2))[0]["status"]!.GetValue<string>().ShouldBe("Completed");
        await ShouldMatchAsync("public.big", "killedpostgres_big", "id", "label");
    }

    [Fact]
    public async Task an_incremental_run_killed_mid_way_keeps_its_committed_batches_and_the_next_run_is_exact()
    {
        var id = await CreateWithPagesAsync("resumed", Cursor("orders", "incremental", "updated_at"));
        FirstRun(id)["status"]!.GetValue<string>().ShouldBe("Completed");
        await Db.ExecuteAsync("UPDATE public.orders SET updated_at = '2024-05-01'::timestamptz + id * interval '1 second', status = 'updated' WHERE id <= 3500;");

        Settings.AfterBatchCommitted = (_, batch) => batch == 2 ? throw new IOException("killed after batch 2") : Task.CompletedTask;
        (await ReloadAndWaitAsync(id, 1))[0]["status"]!.GetValue<string>().ShouldBe("Failed");
        (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.resumedpostgres_orders WHERE status = 'updated'")).ShouldBe(2000, "two committed batches of 1,000");

        Settings.AfterBatchCommitted = null;
        var rerun = (await ReloadAndWaitAsync(id, 2))[0];
        rerun["mode"]!.GetValue<string>().ShouldBe("incremental");
        rerun["rows_synced"]!.GetValue<long>().ShouldBeLessThanOrEqualTo(1501 + 1000, "the rerun starts at the committed watermark: at most one batch is read again");
        await ShouldMatchAsync("public.orders", "resumedpostgres_orders", "id", "updated_at", "status");
        (await DuplicateKeysAsync("resumedpostgres_orders")).ShouldBe(0);
        await RowCountShouldBeExactAsync(id, "orders", "resumedpostgres_orders");
    }

    [Fact]
    public async Task row_filters_apply_at_the_source()
    {
        var schema = FullRefresh("regions");
        schema["row_filters"] = new JsonArray(
            new JsonObject { ["column"] = "region", ["operator"] = "=", ["value"] = "eu" },
            new JsonObject { ["column"] = "amount", ["operator"] = ">", ["value"] = 150 });
        var id = await CreateAsync("filtered", schema);
        FirstRun(id)["rows_synced"]!.GetValue<long>().ShouldBe(50);
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.filteredpostgres_regions", ["id", "region", "amount"]))
            .ShouldBe(await RowsAsync(SourceConnection, "(SELECT * FROM public.regions WHERE region = 'eu' AND amount > 150) r", ["id", "region", "amount"]));
    }

    [Fact]
    public async Task only_the_enabled_columns_land_and_a_row_filter_may_name_another()
    {
        var schema = FullRefresh("regions");
        schema["enabled_columns"] = new JsonArray("id", "amount");
        schema["row_filters"] = new JsonArray(new JsonObject { ["column"] = "region", ["operator"] = "=", ["value"] = "eu" });
        var id = await CreateAsync("narrow", schema);
        FirstRun(id)["rows_synced"]!.GetValue<long>().ShouldBe(100);
        (await ScalarAsync($"SELECT count(*) FROM information_schema.columns WHERE table_schema = '{Warehouse}' AND table_name = 'narrowpostgres_regions' AND column_name = 'region'"))
            .ShouldBe(0, "a column that is not enabled is not in the warehouse");
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.narrowpostgres_regions", ["id", "amount"]))
            .ShouldBe(await RowsAsync(SourceConnection, "(SELECT * FROM public.regions WHERE region = 'eu') r", ["id", "amount"]));
    }
}
