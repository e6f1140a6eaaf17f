using System.Net;
using System.Text.Json.Nodes;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>Base for integration tests: a fresh project per test class instance, and helpers that build state
/// through the real API.</summary>
[Collection(IntegrationCollection.Name)]
public abstract class IntegrationContext(AppFixture app)
{
    protected AppFixture App { get; } = app;
    protected string ProjectId { get; } = Random.Shared.Next(100_000, int.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture);
    protected ApiClient Api => App.Client();
    protected string Sources => $"/api/projects/{ProjectId}/external_data_sources/";
    protected string SourceUrl(string id) => $"{Sources}{id}/";

    /// <summary>The Postgres config of the test source database, as a caller sends it.</summary>
    protected JsonObject PostgresConfig(string? password = null, string schema = "public") => new()
    {
        ["host"] = App.Source.Host,
        ["port"] = App.Source.Port,
        ["database"] = App.Source.Name,
        ["user"] = SourceDatabase.Reader,
        ["password"] = password ?? App.Source.ReaderPassword,
        ["schema"] = schema,
    };

    protected static JsonArray OrdersIncremental() =>
    [
        new JsonObject
        {
            ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "incremental",
            ["incremental_field"] = "updated_at", ["incremental_field_type"] = "timestamp",
        },
    ];

    protected JsonObject CreateBody(string? prefix = null, JsonObject? config = null, JsonArray? schemas = null, string? description = null)
    {
        var payload = config ?? PostgresConfig();
        payload["schemas"] = schemas ?? OrdersIncremental();
        return new JsonObject { ["source_type"] = "Postgres", ["prefix"] = prefix, ["description"] = description, ["payload"] = payload };
    }

    /// <summary>Waits until the source has at least <paramref name="runs"/> jobs, none is running, and every table that ran
    /// has its next run armed: what its enabled tables start by themselves is over, so reads compared before and after
    /// something else see nothing land mid-way.</summary>
    protected async Task RunsSettledAsync(string id, int runs = 1)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        while (true)
        {
            var jobs = (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray();
            // A run's end arms the table's next run a moment later: settled means that is done too.
            if (jobs.Count >= runs && jobs.All(j => j!["status"]!.GetValue<string>() != "Running")
                && (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray()
                    .Where(t => t!["should_sync"]!.GetValue<bool>() && t["status"]?.GetValue<string>() is "Completed" or "Failed")
                    .All(t => t!["next_sync_at"] is not null)) return;
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"runs of {id} did not settle: {jobs.ToJsonString()}");
            await Task.Delay(100);
        }
    }

    /// <summary>Creates a Postgres source and waits for the first runs its enabled tables start by themselves (SYNC.md §5)
    /// to end, so what a test reads next is not moved by a run landing mid-way. Answers the create's own answer.</summary>
    protected async Task<JsonNode> CreateSourceAsync(string? prefix = null, JsonObject? config = null, JsonArray? schemas = null)
    {
        var body = CreateBody(prefix, config, schemas);
        var created = (await Api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json;
        // CDC and webhook tables are fed by their own streams: they start no run.
        var enabled = body["payload"]!["schemas"]!.AsArray()
            .Count(s => s?["should_sync"]?.GetValue<bool>() == true && s["sync_type"]?.GetValue<string>() is not ("cdc" or "webhook"));
        if (enabled > 0) await RunsSettledAsync(created["id"]!.GetValue<string>(), enabled);
        return created;
    }

    /// <summary>How many tables the default source config discovers (public schema of the test database: five tables
    /// and a view). A create records the source and one event per table, so a new source is at version 1 + this.</summary>
    protected const int PublicTables = 6;
    protected const int CreatedVersion = 1 + PublicTables;

    /// <summary>The stream versions of a source's events, in order, not counting tombstones.</summary>
    protected async Task<IReadOnlyList<long>> StreamVersionsAsync(string streamId)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            $"SELECT version FROM {App.Schema}.mt_events WHERE tenant_id = @tenant AND type <> 'tombstone' AND stream_id = @stream::uuid ORDER BY seq_id", connection);
        command.Parameters.AddWithValue("tenant", ProjectId);
        command.Parameters.AddWithValue("stream", streamId);
        var versions = new List<long>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) versions.Add(reader.GetInt64(0));
        return versions;
    }

    /// <summary>The canary's last word: no row of the event, document or Wolverine tables holds the marker (nor the
    /// tail of it, as Stripe quotes a key's last characters).</summary>
    protected async Task AssertNowhereStoredAsync(string marker)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand(
                         "SELECT table_name FROM information_schema.tables WHERE table_schema = @schema AND (table_name = 'mt_events' OR table_name LIKE 'mt_doc_%' OR table_name LIKE 'wolverine_%')",
                         connection))
        {
            list.Parameters.AddWithValue("schema", App.Schema);
            await using var reader = await list.ExecuteReaderAsync();
            while (await reader.ReadAsync()) tables.Add(reader.GetString(0));
        }

        tables.ShouldContain("mt_events");
        foreach (var table in tables)
        {
            await using var count = new NpgsqlCommand(
                $"SELECT count(*) FROM {App.Schema}.{table} t WHERE t::text LIKE '%' || @canary || '%' OR t::text LIKE '%' || @tail || '%'", connection);
            count.Parameters.AddWithValue("tail", marker[^12..]);
            count.Parameters.AddWithValue("canary", marker);
            ((long)(await count.ExecuteScalarAsync())!).ShouldBe(0, $"{table} holds the secret in plaintext");
        }
    }

    /// <summary>A login role whose password is the marker, able to read the source database's tables.</summary>
    protected async Task<JsonObject> CanaryConfigAsync(string canary)
    {
        await using (var admin = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres")))
        {
            await admin.OpenAsync();
            await using var command = new NpgsqlCommand($"CREATE ROLE canary_{ProjectId} LOGIN PASSWORD '{canary}'; GRANT source_reader TO canary_{ProjectId};", admin);
            await command.ExecuteNonQueryAsync();
        }

        var config = PostgresConfig(password: canary);
        config["user"] = $"canary_{ProjectId}";
        return config;
    }

    /// <summary>The project's lifecycle events: not Marten's tombstones (its record of appends that rolled back), nor the
    /// sync runs' (their streams are the run loop's, which runs in the background on its own schedule).</summary>
    protected async Task<long> EventCountAsync(string? streamId = null)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            $"SELECT count(*) FROM {App.Schema}.mt_events WHERE tenant_id = @tenant AND type <> 'tombstone' AND type NOT LIKE 'sync\\_%' AND (@stream::uuid IS NULL OR stream_id = @stream::uuid)", connection);
        command.Parameters.AddWithValue("tenant", ProjectId);
        command.Parameters.AddWithValue("stream", (object?)streamId ?? DBNull.Value);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The types of a stream's events in order (snake_case, as history names them), not counting tombstones.</summary>
    protected async Task<IReadOnlyList<string>> EventTypesAsync(string streamId, string? schema = null)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            $"SELECT type FROM {schema ?? App.Schema}.mt_events WHERE tenant_id = @tenant AND type <> 'tombstone' AND stream_id = @stream::uuid ORDER BY seq_id", connection);
        command.Parameters.AddWithValue("tenant", ProjectId);
        command.Parameters.AddWithValue("stream", streamId);
        var types = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) types.Add(reader.GetString(0));
        return types;
    }
}
