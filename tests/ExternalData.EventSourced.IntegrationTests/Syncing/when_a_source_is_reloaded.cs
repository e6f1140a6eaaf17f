using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>A reload runs every enabled table into the warehouse as a full refresh (SYNC.md §1–§4): rows and types exact,
/// deletions gone, failures leave the last table readable, one run per table at a time, and the source's own stream
/// untouched. Source and warehouse are compared as text, value by value.</summary>
public sealed class when_a_source_is_reloaded(AppFixture app) : SyncContext(app, TypesTable, "sync")
{
    // One row per edge case of SYNC.md §2's types; the id pages the read.
    private const string TypesTable = """
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
        CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
        CREATE TYPE pair AS (a int, b text);
        CREATE TABLE public.typed (
            id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric(18,4), num_free numeric, r4 real, r8 double precision,
            t text, vc varchar(20), ch char(3), b boolean, u uuid, d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz,
            iv interval, by bytea, ip inet, net cidr, mac macaddr, j json, jb jsonb, ints integer[], texts text[], m mood, p positive, c pair);
        INSERT INTO public.typed VALUES
          (1, -32768, -2147483648, -9223372036854775808, 12345678901234.5678, 'NaN', 'NaN', 'Infinity', 'plain', 'short', 'abc', true,
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '23:59:59.999999', '12:00:00+05:30', '2024-01-01 00:00:00', 'infinity',
           '1 year 2 mons 3 days 04:05:06', '\xdeadbeef', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '{"a": [1, 2]}', '{"b": {"c": null}}',
           '{1,NULL,3}', '{"x","y z"}', 'happy', 7, ROW(1, 'one')),
          (2, 32767, 2147483647, 9223372036854775807, -0.0001, '-1e-20', '-Infinity', '-Infinity', 'ünïcödé ✓ 日本語', '', '   ', false,
           '00000000-0000-0000-0000-000000000000', '-infinity', '00:00:00', '00:00:00-12', '1970-01-01 00:00:00.000001', '-infinity',
           '-1 days', '', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '[]', '[]', '{}', '{}', 'sad', 1, ROW(NULL, NULL)),
          (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL);
        CREATE TABLE public.big (id bigint PRIMARY KEY, label text, amount numeric(12,2), at timestamptz);
        INSERT INTO public.big SELECT g, 'row ' || g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 200000) g;
        CREATE TABLE public.keyless (v text, n int);
        INSERT INTO public.keyless SELECT 'v' || g, g FROM generate_series(1, 1000) g;
        ANALYZE;
        """;

    private Task<string> CreateAsync(string prefix, params string[] tables) => CreateAsync(prefix, tables.Select(FullRefresh).ToArray());

    [Fact]
    public async Task every_type_round_trips_exactly_and_the_schema_shows_its_table()
    {
        var id = await CreateAsync("typed", "typed");
        var job = (await ReloadAndWaitAsync(id, 1)).ShouldHaveSingleItem("the reload's job (the first run's is counted apart)");
        job["status"]!.GetValue<string>().ShouldBe("Completed", job.ToJsonString());
        job["rows_synced"]!.GetValue<long>().ShouldBe(3);
        job["schema"]!["name"]!.GetValue<string>().ShouldBe("typed");
        job["created_by"]!.GetValue<string>().ShouldBe("test-admin");
        job["trigger"]!.GetValue<string>().ShouldBe("manual");

        string[] columns = ["id", "i2", "i4", "i8", "num", "num_free", "r4", "r8", "t", "vc", "ch", "b", "u", "d", "tm", "tmtz", "ts", "tstz", "iv", "by", "ip", "net", "mac", "j", "jb", "ints", "texts", "m", "p", "c"];
        var source = await RowsAsync(SourceConnection, "public.typed", columns, jsonColumn: "j");
        var warehouse = await RowsAsync(WarehouseConnection, $"{Warehouse}.typedpostgres_typed", columns);
        warehouse.ShouldBe(source);

        var retrieved = (await Api.GetAsync(SourceUrl(id))).Json;
        retrieved["status"]!.GetValue<string>().ShouldBe("Completed");
        retrieved["last_run_at"].ShouldNotBeNull();
        var schema = retrieved["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "typed")!;
        schema["status"]!.GetValue<string>().ShouldBe("Completed");
        schema["last_synced_at"].ShouldNotBeNull();
        var table = schema["table"]!;
        table["name"]!.GetValue<string>().ShouldBe("typedpostgres_typed");
        table["schema"]!.GetValue<string>().ShouldBe(Warehouse);
        table["row_count"]!.GetValue<long>().ShouldBe(3);
        var types = table["columns"]!.AsArray().ToDictionary(c => c!["name"]!.GetValue<string>(), c => c!["type"]!.GetValue<string>());
        types["j"].ShouldBe("jsonb");
        types["m"].ShouldBe("text", "an enum lands as its text");
        types["p"].ShouldBe("integer", "a domain lands as its base type");
        types["c"].ShouldBe("text", "a composite lands as its text form");
        types["num"].ShouldBe("numeric(18,4)");
        types["_ph_synced_at"].ShouldBe("timestamp with time zone");

        // The start names who asked (the admin's reload, over the API); what the run itself records names the service.
        await using (var events = new NpgsqlConnection(WarehouseConnection))
        {
            await events.OpenAsync();
            await using var command = new NpgsqlCommand(
                $"SELECT type, headers->>'actor_name', headers->>'created_via', data->'RecordedBy'->>'Name' FROM {App.Schema}.mt_events WHERE stream_id = @job ORDER BY version", events);
            command.Parameters.AddWithValue("job", Guid.Parse(job["id"]!.GetValue<string>()));
            var rows = new List<string>();
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync()) rows.Add($"{reader.GetString(0)} {reader.GetString(1)} {reader.GetString(2)} {(await reader.IsDBNullAsync(3) ? "-" : reader.GetString(3))}");
            rows.ShouldBe([
                "sync_job_started test-admin api -",
                "sync_batch_loaded system:sync-runner system system:sync-runner",
                "sync_job_completed system:sync-runner system system:sync-runner",
            ]);
        }

        // The other tables were not enabled, so they were not synced.
        retrieved["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "big")!["table"].ShouldBeNull();
    }

    [Fact]
    public async Task two_hundred_thousand_rows_arrive_in_pages_and_rows_deleted_upstream_are_gone_after_the_next_run()
    {
        var id = await CreateAsync("paged", "big", "keyless");
        var jobs = await ReloadAndWaitAsync(id, 2);
        var big = jobs.Single(j => j["schema"]!["name"]!.GetValue<string>() == "big");
        big["status"]!.GetValue<string>().ShouldBe("Completed", big.ToJsonString());
        big["rows_synced"]!.GetValue<long>().ShouldBe(200_000);
        // Whole-table reads page on ranges of blocks sized from the table's rows per block: about 50,000 rows a page.
        big["batches"]!.GetValue<int>().ShouldBeInRange(4, 6, "200,000 rows in pages of about 50,000");
        jobs.Single(j => j["schema"]!["name"]!.GetValue<string>() == "keyless")["batches"]!.GetValue<int>().ShouldBe(1, "a thousand rows fit one page");
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.pagedpostgres_big", ["id", "label", "amount", "at"]))
            .ShouldBe(await RowsAsync(SourceConnection, "public.big", ["id", "label", "amount", "at"]));
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.pagedpostgres_keyless", ["v", "n"]))
            .ShouldBe(await RowsAsync(SourceConnection, "public.keyless", ["v", "n"]));

        await Db.ExecuteAsync("DELETE FROM public.big WHERE id % 3 = 0; UPDATE public.big SET label = 'changed' WHERE id = 1; INSERT INTO public.big VALUES (300000, 'new', 1, now());");
        jobs = await ReloadAndWaitAsync(id, 4);
        jobs.Count(j => j["status"]!.GetValue<string>() == "Completed").ShouldBe(4);
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.pagedpostgres_big", ["id", "label", "amount", "at"]))
            .ShouldBe(await RowsAsync(SourceConnection, "public.big", ["id", "label", "amount", "at"]));
    }

    [Fact]
    public async Task a_failed_run_leaves_the_last_table_readable_and_says_why()
    {
        var id = await CreateAsync("failing", "keyless");
        (await ReloadAndWaitAsync(id, 1)).ShouldHaveSingleItem()["status"]!.GetValue<string>().ShouldBe("Completed");

        await Db.ExecuteAsync("ALTER TABLE public.keyless RENAME TO keyless_gone;");
        var jobs = await ReloadAndWaitAsync(id, 2);
        var failed = jobs[0];
        failed["status"]!.GetValue<string>().ShouldBe("Failed", failed.ToJsonString());
        failed["latest_error"]!.GetValue<string>().ShouldContain("keyless");
        failed["error_class"]!.GetValue<string>().ShouldBe("table_missing");

        // The previous run's table is untouched and readable.
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.failingpostgres_keyless", ["v", "n"])).Count.ShouldBe(1000);
        var schema = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "keyless")!;
        schema["status"]!.GetValue<string>().ShouldBe("Failed");
        schema["latest_error"]!.GetValue<string>().ShouldContain("keyless");
        schema["table"]!["row_count"]!.GetValue<long>().ShouldBe(1000);
        (await Api.GetAsync(SourceUrl(id))).Json["status"]!.GetValue<string>().ShouldBe("Error");

        schema["should_sync"]!.GetValue<bool>().ShouldBeFalse("a table gone upstream stops the schema until someone acts");

        await Db.ExecuteAsync("ALTER TABLE public.keyless_gone RENAME TO keyless;");
        (await Api.PatchAsync($"/api/projects/{ProjectId}/external_data_schemas/{schema["id"]!.GetValue<string>()}/", new JsonObject { ["should_sync"] = true }))
            .ShouldHaveStatus(HttpStatusCode.OK);
        (await ReloadAndWaitAsync(id, 3))[0]["status"]!.GetValue<string>().ShouldBe("Completed");
        (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "keyless")!["latest_error"].ShouldBeNull();
    }

    [Fact]
    public async Task concurrent_reloads_run_one_job_per_table_and_never_move_the_sources_version()
    {
        var id = await CreateAsync("raced", "big");
        var version = (await Api.GetAsync(SourceUrl(id))).Json["version"]!.GetValue<int>();

        var answers = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => Api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())));
        answers.ShouldAllBe(a => a.Status == HttpStatusCode.OK);
        // A write to the source goes through while the run holds the table: the run takes no lock of the source's.
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "edited during a run" })).ShouldHaveStatus(HttpStatusCode.OK);

        var jobs = await JobsWhenDoneAsync(id, 1);
        jobs.ShouldHaveSingleItem()["status"]!.GetValue<string>().ShouldBe("Completed");
        var after = (await Api.GetAsync(SourceUrl(id))).Json;
        after["version"]!.GetValue<int>().ShouldBe(version + 1, "only the PATCH moved the source's version; the run did not");
        after["description"]!.GetValue<string>().ShouldBe("edited during a run");
    }

    [Fact]
    public async Task jobs_are_filtered_by_schema_and_time_and_another_projects_source_is_not_found()
    {
        var id = await CreateAsync("filtered", "keyless", "typed");
        var jobs = await ReloadAndWaitAsync(id, 2);

        (await Api.GetAsync($"{SourceUrl(id)}jobs/?schemas=typed")).Json.AsArray().ShouldAllBe(j => j!["schema"]!["name"]!.GetValue<string>() == "typed");
        (await Api.GetAsync($"{SourceUrl(id)}jobs/?schemas=typed")).Json.AsArray().Count.ShouldBe(2, "its first run, and the reload's");
        var newest = jobs[0]["created_at"]!.GetValue<DateTimeOffset>();
        (await Api.GetAsync($"{SourceUrl(id)}jobs/?after={Uri.EscapeDataString(newest.ToString("O"))}")).Json.AsArray().ShouldBeEmpty();
        (await Api.GetAsync($"{SourceUrl(id)}jobs/?before=not-a-time")).ShouldBeProblem(HttpStatusCode.BadRequest, "before must be an ISO 8601 time.");
        (await Api.GetAsync($"/api/projects/{ProjectId}0/external_data_sources/{id}/jobs/")).Status.ShouldBe(HttpStatusCode.NotFound);
        (await Api.PostAsync($"/api/projects/{ProjectId}0/external_data_sources/{id}/reload/", new JsonObject())).Status.ShouldBe(HttpStatusCode.NotFound);
    }
}
