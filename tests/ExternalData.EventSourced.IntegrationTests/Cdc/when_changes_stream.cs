using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Cdc;

/// <summary>
/// CDC that streams (SYNC.md §3.6, issue 21): a CDC table gets a snapshot lined up with the slot, then every insert, update
/// and delete of the source lands in the warehouse within seconds, deletes flagged with the row's last values, TOASTed values
/// kept; and the slot is acknowledged as the warehouse commits, so it stops holding the source's WAL.
/// </summary>
public sealed class when_changes_stream(AppFixture app) : IntegrationContext(app), IAsyncLifetime
{
    private CdcDatabase _db = null!;

    public async Task InitializeAsync()
    {
        _db = await CdcDatabase.CreateAsync(App.Server);
        await _db.ExecuteAsync($"""
            CREATE TABLE public.items (id int PRIMARY KEY, kind text NOT NULL, big text, n int);
            INSERT INTO public.items SELECT g, 'seed', NULL, g FROM generate_series(1, 20000) g;
            ALTER TABLE public.items OWNER TO {CdcDatabase.Owner};
            """);
    }

    public Task DisposeAsync() => _db.DropAsync();

    private string Warehouse => $"warehouse_{ProjectId}";

    private async Task<(string Id, string Slot)> CreateAsync(string prefix, params string[] tables)
    {
        var config = _db.Config();
        config["cdc_enabled"] = true;
        config["schemas"] = new JsonArray(tables.Select(t => (JsonNode)new JsonObject { ["name"] = t, ["should_sync"] = true, ["sync_type"] = "cdc" }).ToArray());
        var created = (await Api.PostAsync(Sources, new JsonObject { ["source_type"] = "Postgres", ["prefix"] = prefix, ["payload"] = config }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json;
        return (created["id"]!.GetValue<string>(), created["cdc"]!["slot_name"]!.GetValue<string>());
    }

    private async Task<JsonNode> SnapshotJobAsync(string id, string table)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(90);
        while (true)
        {
            var jobs = (await Api.GetAsync($"{SourceUrl(id)}jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray();
            var done = jobs.FirstOrDefault(j => j!["schema"]!["name"]!.GetValue<string>() == table && j["mode"]?.GetValue<string>() == "cdc_snapshot" && j["status"]!.GetValue<string>() == "Completed");
            if (done is not null) return done;
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"no completed snapshot of {table}: {jobs.ToJsonString()}");
            await Task.Delay(200);
        }
    }

    /// <summary>Rows of the source, and live (not deleted) rows of the warehouse, that the other side lacks: both empty when equal.</summary>
    private async Task<(long Missing, long Extra)> DifferenceAsync(string table, string warehouseTable, string columns)
    {
        var source = await RowsAsync(App.Server.ConnectionStringFor(_db.Name), $"SELECT {columns} FROM public.{table}");
        var warehouse = await RowsAsync(App.Server.ConnectionStringFor("postgres"), $"SELECT {columns} FROM {Warehouse}.{warehouseTable} WHERE NOT _ph_deleted");
        return (source.Except(warehouse).LongCount(), warehouse.Except(source).LongCount());
    }

    private static async Task<HashSet<string>> RowsAsync(string connectionString, string select)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT row({select.Replace("SELECT ", "", StringComparison.Ordinal).Split(" FROM ")[0]})::text FROM {select.Split(" FROM ", 2)[1]}", connection);
        var rows = new HashSet<string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0));
        return rows;
    }

    private async Task EventuallyEqualAsync(string table, string warehouseTable, string columns)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        while (true)
        {
            var (missing, extra) = await DifferenceAsync(table, warehouseTable, columns);
            if (missing == 0 && extra == 0) return;
            if (DateTimeOffset.UtcNow > deadline) throw new ShouldAssertException($"warehouse differs from the source: {missing} rows missing, {extra} extra");
            await Task.Delay(250);
        }
    }

    private async Task<T?> WarehouseScalarAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        var value = await command.ExecuteScalarAsync();
        return value is DBNull or null ? default : (T)value;
    }

    [Fact]
    public async Task changes_made_while_the_snapshot_runs_land_exactly_and_deletes_keep_their_last_values()
    {
        var (id, _) = await CreateAsync("mix", "items");
        // Inserts, updates and deletes while the snapshot is being taken and afterwards.
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor(_db.Name));
            await connection.OpenAsync();
            var next = 20_001;
            var random = new Random(7);
            for (var round = 0; round < 300 && !stop.IsCancellationRequested; round++)
            {
                await using var batch = new NpgsqlBatch(connection)
                {
                    BatchCommands =
                    {
                        new NpgsqlBatchCommand($"INSERT INTO public.items VALUES ({next}, 'new', NULL, {round}), ({next + 1}, 'new', NULL, {round})"),
                        new NpgsqlBatchCommand($"UPDATE public.items SET kind = 'updated', n = n + 1 WHERE id = {random.Next(1, next)}"),
                        new NpgsqlBatchCommand($"DELETE FROM public.items WHERE id = {random.Next(1, next)}"),
                    },
                };
                await batch.ExecuteNonQueryAsync();
                // Once, mid-way: the table is emptied upstream and refilled a little; the warehouse table is loaded again.
                if (round == 150)
                {
                    await using var truncate = new NpgsqlCommand($"TRUNCATE public.items; INSERT INTO public.items SELECT g, 'refill', NULL, g FROM generate_series({next + 2}, {next + 500}) g", connection);
                    await truncate.ExecuteNonQueryAsync();
                    next += 500;
                }
                next += 2;
                await Task.Delay(10);
            }
        });

        // (TRUNCATE is not MVCC-safe: a snapshot exported before it but read after it sees the table empty; the TRUNCATE then
        // arrives on the stream and the table is loaded again. So the first snapshot's row count is not asserted, the end is.)
        await SnapshotJobAsync(id, "items");
        await writer;
        await EventuallyEqualAsync("items", "mixpostgres_items", "id, kind, big, n");
        (await WarehouseScalarAsync<long>($"SELECT count(*) FROM {Warehouse}.mixpostgres_items WHERE kind = 'seed'")).ShouldBe(0, "the TRUNCATE emptied the table; nothing from before it stays live");

        // A key-only delete (REPLICA IDENTITY DEFAULT) keeps the row's last values, flagged.
        await _db.ExecuteAsync("INSERT INTO public.items VALUES (900005, 'first words', NULL, 5)");
        await EventuallyEqualAsync("items", "mixpostgres_items", "id, kind, big, n");
        await _db.ExecuteAsync("UPDATE public.items SET kind = 'last words' WHERE id = 900005; DELETE FROM public.items WHERE id = 900005;");
        await EventuallyEqualAsync("items", "mixpostgres_items", "id, kind, big, n");
        (await WarehouseScalarAsync<string>($"SELECT kind || '|' || _ph_deleted::text || '|' || (_ph_deleted_at IS NOT NULL)::text FROM {Warehouse}.mixpostgres_items WHERE id = 900005"))
            .ShouldBe("last words|true|true");
    }

    [Fact]
    public async Task an_update_that_leaves_a_toasted_value_alone_keeps_it()
    {
        await _db.ExecuteAsync("ALTER TABLE public.items ALTER COLUMN big SET STORAGE EXTERNAL; UPDATE public.items SET big = repeat(md5(id::text), 400) WHERE id <= 10;");
        var (id, _) = await CreateAsync("toast", "items");
        await SnapshotJobAsync(id, "items");
        await _db.ExecuteAsync("UPDATE public.items SET n = -1 WHERE id <= 10; INSERT INTO public.items VALUES (99999, 'late', repeat('x', 9000), 1);");
        await EventuallyEqualAsync("items", "toastpostgres_items", "id, kind, big, n");
        (await WarehouseScalarAsync<long>($"SELECT count(*) FROM {Warehouse}.toastpostgres_items WHERE id <= 10 AND n = -1 AND length(big) = 12800")).ShouldBe(10);
    }

    [Fact]
    public async Task the_slot_is_acknowledged_after_a_burst_and_while_only_another_database_is_written()
    {
        var (id, slot) = await CreateAsync("ack", "items");
        await SnapshotJobAsync(id, "items");
        var burstStart = await _db.ScalarAsync<string>("SELECT pg_current_wal_lsn()::text");
        await _db.ExecuteAsync("INSERT INTO public.items SELECT g, 'burst', repeat('y', 200), g FROM generate_series(100001, 120000) g;");
        var burstBytes = await _db.ScalarAsync<long>($"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{burstStart}')::bigint");
        burstBytes.ShouldBeGreaterThan(2 * 1024 * 1024, "the burst is big enough to see the slot let go of it");
        await EventuallyEqualAsync("items", "ackpostgres_items", "id, kind, big, n");

        var lagAfterBurst = await LagAsync(slot);
        lagAfterBurst.ShouldBeLessThan(1024 * 1024, "the slot's confirmed position moved past the burst");
        // What the server keeps (from the slot's restart point) falls too, as cdc_status reports it: the restart point moves
        // at the next record of running transactions after the confirmation, which a checkpoint writes (else every 15 s).
        var retainedDeadline = DateTimeOffset.UtcNow.AddSeconds(30);
        while (true)
        {
            await _db.ExecuteAsync("CHECKPOINT");
            var status = (await Api.GetAsync($"{SourceUrl(id)}cdc_status/")).ShouldHaveStatus(HttpStatusCode.OK).Json;
            if (status["retained_wal_bytes"]!.GetValue<long>() < 1024 * 1024 && status["lag_bytes"]!.GetValue<long>() < 1024 * 1024) break;
            if (DateTimeOffset.UtcNow > retainedDeadline) throw new ShouldAssertException($"cdc_status did not fall back after the burst: {status.ToJsonString()}");
            await Task.Delay(500);
        }

        // Only another database of the cluster is written: the slot still moves on (keepalive positions acknowledged).
        var other = await ScratchDatabase.CreateAsync(App.Server, "CREATE TABLE churn (id serial PRIMARY KEY, v text);", "churn");
        try
        {
            for (var i = 0; i < 10; i++) await other.ExecuteAsync("INSERT INTO churn (v) SELECT repeat('z', 500) FROM generate_series(1, 2000);");
            // 10 MB of WAL written after the burst: a lag under 1 MB means the slot confirmed past it.
            var deadline = DateTimeOffset.UtcNow.AddSeconds(30);
            while (await LagAsync(slot) > 1024 * 1024)
            {
                if (DateTimeOffset.UtcNow > deadline) throw new ShouldAssertException($"the quiet slot did not move on: lag {await LagAsync(slot)} bytes");
                await Task.Delay(250);
            }
        }
        finally { await other.DropAsync(); }
    }

    [Fact]
    public async Task other_sync_types_of_the_source_keep_working_and_progress_is_recorded_once_per_interval_not_per_change()
    {
        await _db.ExecuteAsync("INSERT INTO public.orders VALUES (1, 10.5, now()), (2, 20, now()), (3, NULL, NULL);");
        var config = _db.Config();
        config["cdc_enabled"] = true;
        config["schemas"] = new JsonArray(
            new JsonObject { ["name"] = "items", ["should_sync"] = true, ["sync_type"] = "cdc" },
            new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        var id = (await Api.PostAsync(Sources, new JsonObject { ["source_type"] = "Postgres", ["prefix"] = "both", ["payload"] = config }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await SnapshotJobAsync(id, "items");

        // 120 transactions over 12 s: a progress event per interval (10 s), not one per change.
        for (var i = 0; i < 120; i++)
        {
            await _db.ExecuteAsync($"INSERT INTO public.items VALUES ({50_000 + i}, 'tick', NULL, {i})");
            await Task.Delay(100);
        }

        await EventuallyEqualAsync("items", "bothpostgres_items", "id, kind, big, n");
        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        while ((await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray().All(j => j!["schema"]!["name"]!.GetValue<string>() != "orders" || j["status"]!.GetValue<string>() != "Completed"))
        {
            if (DateTimeOffset.UtcNow > deadline) throw new ShouldAssertException("the full refresh of orders did not complete beside CDC");
            await Task.Delay(200);
        }

        (await WarehouseScalarAsync<long>($"SELECT count(*) FROM {Warehouse}.bothpostgres_orders")).ShouldBe(3);
        var progress = (await EventTypesAsync(CdcStream(id).ToString())).Count(t => t == "cdc_changes_applied");
        progress.ShouldBeInRange(1, 3, "coalesced: at most one per source per 10 s");
    }

    [Fact]
    public async Task with_a_history_table_every_change_is_a_version_valid_until_the_next_and_a_new_upstream_column_is_added()
    {
        var config = _db.Config();
        config["cdc_enabled"] = true;
        config["schemas"] = new JsonArray(new JsonObject { ["name"] = "items", ["should_sync"] = true, ["sync_type"] = "cdc", ["cdc_table_mode"] = "both" });
        var id = (await Api.PostAsync(Sources, new JsonObject { ["source_type"] = "Postgres", ["prefix"] = "hist", ["payload"] = config }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await SnapshotJobAsync(id, "items");
        await _db.ExecuteAsync("""
            UPDATE public.items SET kind = 'first' WHERE id = 7;
            UPDATE public.items SET kind = 'second', n = 0 WHERE id = 7;
            DELETE FROM public.items WHERE id = 7;
            INSERT INTO public.items VALUES (30001, 'born', NULL, 1);
            ALTER TABLE public.items ADD COLUMN note text;
            INSERT INTO public.items VALUES (30002, 'noted', NULL, 2, 'hello');
            """);
        await EventuallyEqualAsync("items", "histpostgres_items", "id, kind, big, n");

        var history = $"{Warehouse}.histpostgres_items_cdc";
        (await WarehouseScalarAsync<long>($"SELECT count(*) FROM {history} WHERE _ph_cdc_op = 'snapshot'")).ShouldBe(20_000, "the snapshot's rows are the first versions");
        (await WarehouseScalarAsync<string>($"""
            SELECT string_agg(_ph_cdc_op || ':' || kind || ':' || (valid_to IS NULL)::text, ' > ' ORDER BY _ph_cdc_seq) FROM {history} WHERE id = 7
            """)).ShouldBe("snapshot:seed:false > update:first:false > update:second:false > delete:second:true");
        (await WarehouseScalarAsync<long>($"SELECT count(*) FROM (SELECT id FROM {history} WHERE valid_to IS NULL GROUP BY id HAVING count(*) > 1) x")).ShouldBe(0, "one open version per row");
        (await WarehouseScalarAsync<long>($"SELECT count(*) FROM {history} h JOIN {history} n ON n.id = h.id AND n.valid_from = h.valid_to")).ShouldBeGreaterThanOrEqualTo(3);
        (await WarehouseScalarAsync<string>($"SELECT note FROM {Warehouse}.histpostgres_items WHERE id = 30002")).ShouldBe("hello", "the new upstream column was added");
        (await WarehouseScalarAsync<string>($"SELECT note FROM {history} WHERE id = 30002")).ShouldBe("hello");
    }

    [Fact]
    public async Task a_table_enabled_later_gets_its_own_snapshot_while_the_others_keep_streaming()
    {
        await _db.ExecuteAsync("INSERT INTO public.orders SELECT g, g, now() FROM generate_series(1, 500) g;");
        var (id, _) = await CreateAsync("later", "items");
        await SnapshotJobAsync(id, "items");
        var orders = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().First(t => t!["name"]!.GetValue<string>() == "orders")!["id"]!.GetValue<string>();
        (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
        {
            ["schemas"] = new JsonArray(new JsonObject { ["id"] = orders, ["should_sync"] = true, ["sync_type"] = "cdc" }),
        })).ShouldHaveStatus(HttpStatusCode.OK);
        await _db.ExecuteAsync("INSERT INTO public.items VALUES (40001, 'meanwhile', NULL, 1); UPDATE public.orders SET total = -1 WHERE id <= 10;");
        await SnapshotJobAsync(id, "orders");
        await _db.ExecuteAsync("INSERT INTO public.items VALUES (40002, 'after', NULL, 2); DELETE FROM public.orders WHERE id = 500;");

        await EventuallyEqualAsync("items", "laterpostgres_items", "id, kind, big, n");
        await EventuallyEqualAsync("orders", "laterpostgres_orders", "id, total, updated_at");
        (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray().Count(j => j!["mode"]?.GetValue<string>() == "cdc_snapshot").ShouldBe(2, "items was not loaded again");
    }

    [Fact]
    public async Task a_resync_loads_the_table_again_from_a_new_snapshot_and_streaming_goes_on()
    {
        var (id, _) = await CreateAsync("resync", "items");
        await SnapshotJobAsync(id, "items");
        // A row the warehouse has and the source no longer does, unknown to the stream: only a new snapshot removes it.
        await WarehouseExecuteAsync($"INSERT INTO {Warehouse}.resyncpostgres_items (id, kind, n) VALUES (-1, 'stray', 0)");
        var items = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().First(t => t!["name"]!.GetValue<string>() == "items")!["id"]!.GetValue<string>();
        (await Api.PostAsync($"/api/projects/{ProjectId}/external_data_schemas/{items}/resync/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);

        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        while ((await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray().Count(j => j!["mode"]?.GetValue<string>() == "cdc_snapshot" && j["status"]!.GetValue<string>() == "Completed") < 2)
        {
            if (DateTimeOffset.UtcNow > deadline) throw new ShouldAssertException("no second snapshot after the resync");
            await Task.Delay(200);
        }

        await _db.ExecuteAsync("INSERT INTO public.items VALUES (60001, 'after resync', NULL, 1)");
        await EventuallyEqualAsync("items", "resyncpostgres_items", "id, kind, big, n");
        (await WarehouseScalarAsync<long>($"SELECT count(*) FROM {Warehouse}.resyncpostgres_items WHERE id = -1")).ShouldBe(0);
    }

    private async Task WarehouseExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task a_publication_dropped_upstream_stops_the_consumer_with_what_to_do()
    {
        var (id, _) = await CreateAsync("nopub", "items");
        await SnapshotJobAsync(id, "items");
        var publication = (await Api.GetAsync(SourceUrl(id))).Json["cdc"]!["publication_name"]!.GetValue<string>();
        await _db.ExecuteAsync($"SET ROLE {CdcDatabase.Owner}; DROP PUBLICATION {publication}; RESET ROLE; INSERT INTO public.items VALUES (88888, 'orphan', NULL, 0);");

        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        while (!(await EventTypesAsync(CdcStream(id).ToString())).Contains("cdc_stream_failed"))
        {
            if (DateTimeOffset.UtcNow > deadline) throw new ShouldAssertException("no cdc_stream_failed event");
            await Task.Delay(250);
        }

        var error = await WarehouseScalarAsync<string>(
            $"SELECT coalesce(data->>'Error', data->>'error') FROM {App.Schema}.mt_events WHERE type = 'cdc_stream_failed' AND stream_id = '{CdcStream(id)}'");
        error.ShouldNotBeNull().ShouldContain("publication");
        error.ShouldContain("Disable and enable CDC again");
        error.ShouldNotContain(CdcDatabase.Password);
    }

    /// <summary>The stream of a source's CDC progress (the service derives it from the source id the same way).</summary>
    private static Guid CdcStream(string sourceId) =>
        new(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes($"cdc-stream:{Guid.Parse(sourceId):N}")).AsSpan(0, 16));

    [Theory]
    [InlineData("disable")]
    [InlineData("delete")]
    public async Task turning_cdc_off_or_deleting_the_source_leaves_no_slot_publication_or_consumer(string how)
    {
        var (id, slot) = await CreateAsync($"off{how}", "items");
        await SnapshotJobAsync(id, "items");
        var streaming = DateTimeOffset.UtcNow.AddSeconds(20);
        while (await _db.ScalarAsync<long>($"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active") != 1)
        {
            if (DateTimeOffset.UtcNow > streaming) throw new ShouldAssertException("the consumer does not stream from the slot");
            await Task.Delay(100);
        }

        if (how == "disable") (await Api.PostAsync($"{SourceUrl(id)}disable_cdc/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        else (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);

        var deadline = DateTimeOffset.UtcNow.AddSeconds(30);
        while (await _db.ScalarAsync<long>($"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'") > 0 || await WalSendersAsync() > 0)
        {
            if (DateTimeOffset.UtcNow > deadline) throw new ShouldAssertException($"slot or consumer still there after {how}");
            await Task.Delay(250);
        }

        // And it stays so: the consumer does not come back for a source whose CDC is off.
        await _db.ExecuteAsync("INSERT INTO public.items VALUES (77777, 'after', NULL, 0)");
        await Task.Delay(TimeSpan.FromSeconds(8));
        (await _db.ScalarAsync<long>("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")).ShouldBe(0);
        (await _db.ScalarAsync<long>("SELECT count(*) FROM pg_publication")).ShouldBe(0);
        (await WalSendersAsync()).ShouldBe(0);
    }

    private Task<long> WalSendersAsync() =>
        _db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database()");

    private async Task<long> LagAsync(string slot)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(30);
        while (true)
        {
            var lag = await _db.ScalarAsync<long>($"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '{slot}'");
            if (lag < 1024 * 1024 || DateTimeOffset.UtcNow > deadline) return lag;
            await Task.Delay(250);
        }
    }
}
