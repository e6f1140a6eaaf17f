using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>
/// Failures provoked for real (SYNC.md §5): what a person must fix (a cursor column dropped, SELECT revoked, a key that is
/// not unique, a column's type changed incompatibly) fails the job with a text that says what to do, disables the schema as
/// the service's own settings change, and keeps it Failed; drift the warehouse can follow (a new column, a widened type, a
/// dropped column) it follows; a source that restarts mid-run is waited for and the run completes exactly; a failure on
/// the service's side never disables anything. No failure text carries a secret.
/// </summary>
public sealed class when_a_run_fails(AppFixture app) : SyncContext(app, Tables, "fails")
{
    private const string Tables = """
        CREATE TABLE public.events (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, name text);
        INSERT INTO public.events SELECT g, '2024-01-01'::timestamptz + g * interval '1 minute', 'e' || g FROM generate_series(1, 300) g;
        CREATE TABLE public.secured (id int PRIMARY KEY, v text);
        INSERT INTO public.secured SELECT g, 'v' || g FROM generate_series(1, 100) g;
        CREATE TABLE public.people (id int PRIMARY KEY, email text, updated_at timestamptz NOT NULL);
        INSERT INTO public.people SELECT g, 'p' || (g % 40) || '@example.com', '2024-01-01' FROM generate_series(1, 100) g;
        CREATE TABLE public.items (id int PRIMARY KEY, updated_at timestamptz NOT NULL, qty int, code varchar(10), price numeric(8,2), gone text);
        INSERT INTO public.items SELECT g, '2024-01-01'::timestamptz + g * interval '1 second', g, 'c' || g, g * 1.25, 'old' FROM generate_series(1, 200) g;
        CREATE TABLE public.flaky (id bigint PRIMARY KEY, v text);
        INSERT INTO public.flaky SELECT g, 'row ' || g FROM generate_series(1, 5000) g;
        CREATE TABLE public.flaky_changes (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, v text);
        INSERT INTO public.flaky_changes SELECT g, '2024-01-01'::timestamptz + g * interval '1 second', 'row ' || g FROM generate_series(1, 5000) g;
        """;

    private SyncRunSettings Settings => App.Host.Services.GetRequiredService<SyncRunSettings>();
    private string Schemas => $"/api/projects/{ProjectId}/external_data_schemas/";

    public override async Task DisposeAsync()
    {
        Settings.PageSize = 50_000;
        Settings.AfterBatchCommitted = null;
        Settings.TransientRetryDelays = [TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(2)];
        await base.DisposeAsync();
    }

    private static JsonObject Incremental(string table, string field = "updated_at") => new()
    {
        ["name"] = table, ["should_sync"] = true, ["sync_type"] = "incremental", ["incremental_field"] = field, ["incremental_field_type"] = "timestamp",
    };

    /// <summary>Pages of 1,000 rows, patient retries, and the upstream cluster crashed once right after a run's second batch
    /// committed, started again 1.5 s later; the task completes once it is up again.</summary>
    private TaskCompletionSource RestartOnceAfterBatchTwo(TestDatabase upstream)
    {
        Settings.PageSize = 1000;
        Settings.TransientRetryDelays = [TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(8)];
        var restarted = new TaskCompletionSource();
        var crashed = 0;
        Settings.AfterBatchCommitted = async (run, batch) =>
        {
            if (batch != 2 || Interlocked.Exchange(ref crashed, 1) == 1) return;
            await upstream.CrashAsync();
            _ = Task.Run(async () =>
            {
                await Task.Delay(1500);
                await upstream.StartAgainAsync();
                restarted.SetResult();
            });
        };
        return restarted;
    }

    private async Task<JsonNode> SchemaAsync(string id, string name) =>
        (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == name)!;

    /// <summary>The schema is disabled by the service (eventually: a message after the failed run), stays Failed with the
    /// job's text, and its source shows Error; the disable is in the source's history as the run loop's.</summary>
    private async Task ShouldBeDisabledByTheServiceAsync(string id, string table, JsonNode failed)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        JsonNode schema;
        while ((schema = await SchemaAsync(id, table))["should_sync"]!.GetValue<bool>())
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"{table} was not disabled after {failed.ToJsonString()}");
            await Task.Delay(100);
        }

        schema["status"]!.GetValue<string>().ShouldBe("Failed", "disabled by the service, it shows why rather than Paused");
        schema["latest_error"]!.GetValue<string>().ShouldBe(failed["latest_error"]!.GetValue<string>());
        schema["next_sync_at"].ShouldBeNull("no schedule while disabled");
        (await Api.GetAsync(SourceUrl(id))).Json["status"]!.GetValue<string>().ShouldBe("Error");
        var history = (await Api.GetAsync($"{SourceUrl(id)}history/?limit=1000")).Json["results"]!.AsArray();
        var disable = history.Last(e => e!["type"]!.GetValue<string>() == "schemas_bulk_updated")!;
        disable["actor"]!["name"]!.GetValue<string>().ShouldBe("system:sync-runner");
        disable["created_via"]!.GetValue<string>().ShouldBe("system");
        ShouldHoldNoSecret(failed.ToJsonString());
        ShouldHoldNoSecret(schema.ToJsonString());
    }

    private void ShouldHoldNoSecret(string text)
    {
        var password = Db.Config()["password"]!.GetValue<string>();
        if (password.Length > 0) text.ShouldNotContain(password);
        text.ShouldNotContain("Password=", Case.Insensitive);
        text.ShouldNotContain("Host=", Case.Insensitive);
    }

    [Fact]
    public async Task a_cursor_column_dropped_upstream_fails_the_run_and_disables_the_schema_saying_what_to_do()
    {
        var id = await CreateAsync("cursor", Incremental("events"));
        FirstRun(id)["status"]!.GetValue<string>().ShouldBe("Completed");

        await Db.ExecuteAsync("ALTER TABLE public.events DROP COLUMN updated_at;");
        var failed = (await ReloadAndWaitAsync(id, 1))[0];
        failed["status"]!.GetValue<string>().ShouldBe("Failed", failed.ToJsonString());
        failed["error_class"]!.GetValue<string>().ShouldBe("cursor_missing");
        failed["latest_error"]!.GetValue<string>().ShouldBe(
            "The incremental field 'updated_at' of 'events' is gone upstream (or not among enabled_columns). Pick another incremental field, or sync the table as a full refresh, then enable the schema again.");
        await ShouldBeDisabledByTheServiceAsync(id, "events", failed);
        (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.cursorpostgres_events")).ShouldBe(300, "the last good table stays readable");
    }

    [Fact]
    public async Task select_revoked_fails_the_run_as_permission_denied_and_disables_the_schema()
    {
        var role = $"reader_{Guid.NewGuid():N}"[..20];
        await Db.ExecuteAsync($"CREATE ROLE {role} LOGIN PASSWORD 'Reader-Secret-42'; GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON public.secured TO {role};");
        var config = Db.Config();
        config["user"] = role;
        config["password"] = "Reader-Secret-42";
        var id = await CreateWithAsync(config, "grant", FullRefresh("secured"));

        await Db.ExecuteAsync($"REVOKE SELECT ON public.secured FROM {role};");
        var failed = (await ReloadAndWaitAsync(id, 1))[0];
        failed["status"]!.GetValue<string>().ShouldBe("Failed", failed.ToJsonString());
        failed["error_class"]!.GetValue<string>().ShouldBe("permission_denied");
        failed["latest_error"]!.GetValue<string>().ShouldStartWith("Permission denied reading the table: permission denied for table secured.");
        failed["latest_error"]!.GetValue<string>().ShouldContain("Grant SELECT on it to the source's user");
        failed.ToJsonString().ShouldNotContain("Reader-Secret-42");
        await ShouldBeDisabledByTheServiceAsync(id, "secured", failed);
    }

    [Fact]
    public async Task a_merge_key_that_is_not_unique_fails_before_anything_merges_and_counts_the_duplicates()
    {
        var people = Incremental("people");
        people["primary_key_columns"] = new JsonArray("email");
        var id = await CreateAsync("dupes", people);
        var failed = FirstRun(id);
        failed["status"]!.GetValue<string>().ShouldBe("Failed", failed.ToJsonString());
        failed["error_class"]!.GetValue<string>().ShouldBe("duplicate_primary_keys");
        failed["latest_error"]!.GetValue<string>().ShouldBe(
            "The source holds more than one row for 40 values of the merge key (email), so merging would silently drop rows. Make the key unique upstream or set primary_key_columns to a unique key, then enable the schema again.");
        (await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{Warehouse}' AND tablename = 'dupespostgres_people'")).ShouldBe(0, "nothing was merged");
        await ShouldBeDisabledByTheServiceAsync(id, "people", failed);
    }

    [Fact]
    public async Task added_widened_and_dropped_columns_follow_upstream_and_an_incompatible_change_names_the_column()
    {
        var id = await CreateAsync("drift", Incremental("items"));
        FirstRun(id)["status"]!.GetValue<string>().ShouldBe("Completed");

        await Db.ExecuteAsync("""
            ALTER TABLE public.items ALTER COLUMN qty TYPE bigint, ALTER COLUMN code TYPE varchar(40), ALTER COLUMN price TYPE numeric(12,2),
                ADD COLUMN extra text, DROP COLUMN gone;
            UPDATE public.items SET qty = 5000000000, code = repeat('x', 30), price = 1234567.89, extra = 'new', updated_at = '2024-06-01' WHERE id <= 10;
            INSERT INTO public.items (id, updated_at, qty, code, price, extra) VALUES (1000, '2024-06-02', 1, 'n', 1, 'added');
            """);
        var drifted = (await ReloadAndWaitAsync(id, 1))[0];
        drifted["status"]!.GetValue<string>().ShouldBe("Completed", drifted.ToJsonString());
        drifted["note"]!.GetValue<string>().ShouldBe(
            "New upstream columns added: extra (text). Widened: qty integer → bigint, code character varying(10) → character varying(40), price numeric(8,2) → numeric(12,2).");
        var columns = (await SchemaAsync(id, "items"))["table"]!["columns"]!.AsArray().ToDictionary(c => c!["name"]!.GetValue<string>(), c => c!["type"]!.GetValue<string>());
        columns["qty"].ShouldBe("bigint");
        columns["code"].ShouldBe("character varying(40)");
        columns["price"].ShouldBe("numeric(12,2)");
        columns["extra"].ShouldBe("text");
        columns["gone"].ShouldBe("text", "a column dropped upstream stays");
        await ShouldMatchAsync("public.items", "driftpostgres_items", "id", "updated_at", "qty", "code", "price", "extra");
        (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.driftpostgres_items WHERE gone IS NULL")).ShouldBe(1, "only the row inserted after the drop has no value");

        await Db.ExecuteAsync("ALTER TABLE public.items ALTER COLUMN code TYPE integer USING length(code); UPDATE public.items SET updated_at = '2024-07-01' WHERE id = 1;");
        var failed = (await ReloadAndWaitAsync(id, 2))[0];
        failed["status"]!.GetValue<string>().ShouldBe("Failed", failed.ToJsonString());
        failed["error_class"]!.GetValue<string>().ShouldBe("incompatible_type_change");
        failed["latest_error"]!.GetValue<string>().ShouldBe(
            "The column 'code' changed type upstream from character varying(40) to integer, which the warehouse column cannot hold without converting the rows already synced. Resync the schema to reload the table with the new type, or change the column back upstream.");
        await ShouldBeDisabledByTheServiceAsync(id, "items", failed);
    }

    [Fact]
    public async Task a_source_that_restarts_mid_run_is_waited_for_and_the_run_completes_exactly()
    {
        await using var upstream = await TestDatabase.StartAsync(new Dictionary<string, string>());
        var database = await ScratchDatabase.CreateAsync(upstream, Tables, "restart");
        // The test server commits without waiting for its WAL (synchronous_commit off): a crash moments after the tables were
        // made would lose them. What a real source has committed survives its crash; make it so here before crashing it.
        await database.ExecuteAsync("CHECKPOINT");
        try
        {
            var restarted = RestartOnceAfterBatchTwo(upstream);
            var id = await CreateWithAsync(database.Config(), "restart", FullRefresh("flaky"));
            var job = FirstRun(id);
            restarted.Task.IsCompleted.ShouldBeTrue("the source was down mid-run");
            job["status"]!.GetValue<string>().ShouldBe("Completed", job.ToJsonString());
            job["rows_synced"]!.GetValue<long>().ShouldBe(5000);
            // The load went on from its two committed batches in the new connection's snapshot, keeping their rows (ADR 0051).
            (await ScalarAsync($"SELECT (data->>'KeptRows')::bigint FROM {App.Schema}.mt_events WHERE stream_id = '{job["id"]}' AND type = 'sync_load_resumed'"))
                .ShouldBe(await ScalarAsync($"SELECT (data->>'TotalRows')::bigint FROM {App.Schema}.mt_events WHERE stream_id = '{job["id"]}' AND type = 'sync_batch_loaded' AND (data->>'Batch')::int = 2"));
            (await RowsAsync(WarehouseConnection, $"{Warehouse}.restartpostgres_flaky", ["id", "v"]))
                .ShouldBe(await RowsAsync(upstream.ConnectionStringFor(database.Name), "public.flaky", ["id", "v"]));
            (await SchemaAsync(id, "flaky"))["should_sync"]!.GetValue<bool>().ShouldBeTrue();
        }
        finally
        {
            Settings.AfterBatchCommitted = null;
            await database.DropAsync();
        }
    }

    [Fact]
    public async Task an_incremental_run_whose_source_restarts_between_pages_goes_on_from_its_watermark_exactly()
    {
        // The next page's bounds are probed while the warehouse merges the last one: the crash meets that probe or the
        // next copy, and either way the page in flight is read again on the new connection, nothing lost or doubled.
        await using var upstream = await TestDatabase.StartAsync(new Dictionary<string, string>());
        var database = await ScratchDatabase.CreateAsync(upstream, Tables, "restartinc");
        try
        {
            var id = await CreateWithAsync(database.Config(), "restartinc", Incremental("flaky_changes"));
            FirstRun(id)["status"]!.GetValue<string>().ShouldBe("Completed");
            await database.ExecuteAsync("""
                UPDATE public.flaky_changes SET v = 'changed ' || id, updated_at = '2025-01-01'::timestamptz + id * interval '1 second' WHERE id % 5 <> 0;
                INSERT INTO public.flaky_changes SELECT g, '2025-06-01'::timestamptz + g * interval '1 second', 'new ' || g FROM generate_series(5001, 5100) g;
                """);
            // Committed first, then made durable: in the same query string the checkpoint would run before the commit, and the
            // crash (synchronous_commit off) could take the changes with it.
            await database.ExecuteAsync("CHECKPOINT");
            var restarted = RestartOnceAfterBatchTwo(upstream);

            var job = (await ReloadAndWaitAsync(id, 1))[0];
            restarted.Task.IsCompleted.ShouldBeTrue("the source was down mid-run");
            job["status"]!.GetValue<string>().ShouldBe("Completed", job.ToJsonString());
            job["batches"]!.GetValue<int>().ShouldBeGreaterThanOrEqualTo(5, "4,100 changed rows in pages of 1,000");
            (await RowsAsync(WarehouseConnection, $"{Warehouse}.restartincpostgres_flaky_changes", ["id", "updated_at", "v"]))
                .ShouldBe(await RowsAsync(upstream.ConnectionStringFor(database.Name), "public.flaky_changes", ["id", "updated_at", "v"]));
        }
        finally
        {
            Settings.AfterBatchCommitted = null;
            Settings.PageSize = 50_000;
            await database.DropAsync();
        }
    }

    [Fact]
    public async Task a_source_down_for_longer_than_the_retries_fails_neutrally_and_keeps_its_schedule()
    {
        await using var upstream = await TestDatabase.StartAsync(new Dictionary<string, string>());
        var database = await ScratchDatabase.CreateAsync(upstream, Tables, "down");
        await database.ExecuteAsync("CHECKPOINT");
        Settings.TransientRetryDelays = [TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(200)];
        var id = await CreateWithAsync(database.Config(), "down", FullRefresh("secured"));

        await upstream.CrashAsync();
        var failed = (await ReloadAndWaitAsync(id, 1))[0];
        failed["status"]!.GetValue<string>().ShouldBe("Failed", failed.ToJsonString());
        failed["error_class"]!.GetValue<string>().ShouldBe("connection_refused");
        failed["latest_error"]!.GetValue<string>().ShouldEndWith("The run tried 3 times and stopped; the next scheduled run tries again.");
        ShouldHoldNoSecret(failed.ToJsonString());
        await Task.Delay(1000);
        var schema = await SchemaAsync(id, "secured");
        schema["should_sync"]!.GetValue<bool>().ShouldBeTrue("a transient failure never disables");
        schema["next_sync_at"].ShouldNotBeNull("the schedule goes on");
    }

    [Fact]
    public async Task a_failure_on_the_services_side_is_never_blamed_on_the_source_nor_disables_the_schema()
    {
        var id = await CreateAsync("ours", FullRefresh("flaky"));
        Settings.PageSize = 1000;
        Settings.AfterBatchCommitted = (_, batch) => batch == 2 ? throw new NpgsqlException("the service's database went away") : Task.CompletedTask;
        var failed = (await ReloadAndWaitAsync(id, 1))[0];
        Settings.AfterBatchCommitted = null;
        failed["status"]!.GetValue<string>().ShouldBe("Failed", failed.ToJsonString());
        failed["error_class"]!.GetValue<string>().ShouldBe("internal");
        failed["latest_error"]!.GetValue<string>().ShouldBe("The run failed on the service's side, not the source's; the next run tries again.");
        await Task.Delay(1000);
        (await SchemaAsync(id, "flaky"))["should_sync"]!.GetValue<bool>().ShouldBeTrue();
        (await ReloadAndWaitAsync(id, 2))[0]["status"]!.GetValue<string>().ShouldBe("Completed");
    }
}
