using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Reliability;

/// <summary>
/// A CDC consumer runs on one node of the cluster at a time (a Wolverine agent, ADR 0047). kill -9 of its node while the
/// source is being written: the other node takes the consumer over, resumes from the slot and the warehouse's position,
/// and the warehouse table ends equal to the source, nothing lost and nothing applied twice.
/// </summary>
[Collection(ReliabilityCollection.Name)]
[Trait("Category", "Reliability")]
public sealed class when_a_cdc_consumer_node_dies(ITestOutputHelper output) : IAsyncLifetime
{
    private ReliabilityEnvironment _env = null!;

    private static readonly Dictionary<string, string> FastAssignments = new()
    {
        ["ExternalData__Durability__CheckAssignmentPeriod"] = "00:00:01",
    };

    public async Task InitializeAsync()
    {
        _env = await ReliabilityEnvironment.StartAsync();
        await SourceAsync($"""
            ALTER ROLE {SourceDatabase.Reader} REPLICATION;
            GRANT CREATE ON DATABASE {_env.Source.Name} TO {SourceDatabase.Reader};
            CREATE TABLE public.cdc_items (id int PRIMARY KEY, label text NOT NULL, n int NOT NULL);
            INSERT INTO public.cdc_items SELECT g, 'seed', g FROM generate_series(1, 5000) g;
            ALTER TABLE public.cdc_items OWNER TO {SourceDatabase.Reader};
            """);
    }

    public async Task DisposeAsync() => await _env.DisposeAsync();

    private async Task SourceAsync(string sql)
    {
        await using var source = new NpgsqlConnection(_env.Database.ConnectionStringFor(_env.Source.Name));
        await source.OpenAsync();
        await using var command = new NpgsqlCommand(sql, source);
        await command.ExecuteNonQueryAsync();
    }

    private async Task<T> SourceScalarAsync<T>(string sql)
    {
        await using var source = new NpgsqlConnection(_env.Database.ConnectionStringFor(_env.Source.Name));
        await source.OpenAsync();
        await using var command = new NpgsqlCommand(sql, source);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    private async Task<HashSet<string>> RowsAsync(string database, string table, string where = "true")
    {
        await using var connection = new NpgsqlConnection(_env.Database.ConnectionStringFor(database));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT id::text || '|' || label || '|' || n::text FROM {table} WHERE {where}", connection);
        var rows = new HashSet<string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0));
        return rows;
    }

    [Fact]
    public async Task the_other_node_takes_the_consumer_over_and_the_warehouse_ends_exact()
    {
        var a = await _env.StartNodeAsync("node-a", FastAssignments);
        var api = _env.ClientOf(a);
        var body = _env.PostgresSource("cdcdie");
        body["payload"]!["cdc_enabled"] = true;
        body["payload"]!["schemas"] = new JsonArray(new JsonObject { ["name"] = "cdc_items", ["should_sync"] = true, ["sync_type"] = "cdc" });
        var id = (await api.PostAsync(_env.Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await EventuallyAsync(async () => (await api.GetAsync($"{_env.Sources}{id}/jobs/")).Json.AsArray()
            .Any(j => j!["mode"]?.GetValue<string>() == "cdc_snapshot" && j["status"]!.GetValue<string>() == "Completed"), "the snapshot completed on node-a");
        var b = await _env.StartNodeAsync("node-b", FastAssignments);
        var walSender = await SourceScalarAsync<int>("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database()");

        using var stop = new CancellationTokenSource();
        var written = 0;
        var writer = Task.Run(async () =>
        {
            await using var connection = new NpgsqlConnection(_env.Database.ConnectionStringFor(_env.Source.Name));
            await connection.OpenAsync();
            for (var round = 0; !stop.IsCancellationRequested; round++)
            {
                await using var command = new NpgsqlCommand($"""
                    INSERT INTO public.cdc_items VALUES ({10_000 + round}, 'new', {round});
                    UPDATE public.cdc_items SET n = n + 1, label = 'updated' WHERE id = {1 + round % 5000};
                    DELETE FROM public.cdc_items WHERE id = {2500 + round % 2500} AND label = 'seed';
                    """, connection);
                await command.ExecuteNonQueryAsync();
                written++;
                await Task.Delay(5);
            }
        });

        await Task.Delay(TimeSpan.FromSeconds(2));
        await a.KillAsync();
        output.WriteLine($"node-a killed after {written} rounds of writes");
        await Task.Delay(TimeSpan.FromSeconds(3));
        await stop.CancelAsync();
        await writer;
        output.WriteLine($"{written} rounds written in all");

        var expected = await RowsAsync(_env.Source.Name, "public.cdc_items");
        var warehouse = "warehouse_7001.cdcdiepostgres_cdc_items";
        await EventuallyAsync(async () => (await RowsAsync("postgres", warehouse, "NOT _ph_deleted")).SetEquals(expected),
            "node-b's consumer brought the warehouse level with the source", TimeSpan.FromSeconds(120));
        (await SourceScalarAsync<int>("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND datname = current_database()"))
            .ShouldNotBe(walSender, "the consumer now streams from node-b");
        var lag = await SourceScalarAsync<long>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE database = current_database()");
        output.WriteLine($"slot lag after the takeover: {lag} bytes");
        await _env.ShouldBeConsistentAsync();
        _ = b;
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan? within = null)
    {
        var deadline = DateTimeOffset.UtcNow + (within ?? TimeSpan.FromSeconds(90));
        while (true)
        {
            try
            {
                if (await condition()) return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or NpgsqlException)
            {
                // The node or the database is not answering yet.
            }

            if (DateTimeOffset.UtcNow > deadline) throw new ShouldAssertException($"not within the time allowed: {what}");
            await Task.Delay(250);
        }
    }
}
