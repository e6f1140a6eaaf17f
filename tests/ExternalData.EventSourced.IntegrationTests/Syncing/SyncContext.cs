using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>What every sync test does: a source database of its own in the fixture cluster, runs started and awaited through
/// the API, and source and warehouse compared row by row as text (SYNC.md §2).</summary>
public abstract class SyncContext(AppFixture app, string tables, string prefix) : IntegrationContext(app), IAsyncLifetime
{
    protected ScratchDatabase Db { get; private set; } = null!;

    public async Task InitializeAsync() => Db = await ScratchDatabase.CreateAsync(App.Server, tables, prefix);

    public virtual Task DisposeAsync() => Db.DropAsync();

    protected string Warehouse => $"warehouse_{ProjectId}";
    protected string SourceConnection => App.Server.ConnectionStringFor(Db.Name);
    protected string WarehouseConnection => App.Server.ConnectionStringFor("postgres");

    private readonly Dictionary<string, List<JsonNode>> _firstRuns = [];

    /// <summary>Creates the source and waits for the first runs its enabled tables start by themselves (SYNC.md §5); later
    /// job counts and lists leave those out (see <see cref="FirstRun"/>).</summary>
    protected Task<string> CreateAsync(string prefix, params JsonObject[] schemas) => CreateWithAsync(Db.Config(), prefix, schemas);

    /// <summary><see cref="CreateAsync"/> with a config of the test's own (another user, another server).</summary>
    protected async Task<string> CreateWithAsync(JsonObject config, string prefix, params JsonObject[] schemas)
    {
        var id = (await CreateSourceAsync(prefix: prefix, config: config, schemas: new JsonArray(schemas.Select(s => (JsonNode)s).ToArray())))["id"]!.GetValue<string>();
        _firstRuns[id] = [];
        _firstRuns[id] = await JobsWhenDoneAsync(id, schemas.Count(s => s["should_sync"]?.GetValue<bool>() == true));
        return id;
    }

    /// <summary>The run a table started by itself when the source was created.</summary>
    protected JsonNode FirstRun(string id, string? table = null) =>
        _firstRuns[id].Single(j => table is null || j["schema"]!["name"]!.GetValue<string>() == table);

    protected static JsonObject FullRefresh(string table) => new() { ["name"] = table, ["should_sync"] = true, ["sync_type"] = "full_refresh" };

    protected async Task<List<JsonNode>> ReloadAndWaitAsync(string id, int expectedJobs)
    {
        (await Api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        return await JobsWhenDoneAsync(id, expectedJobs);
    }

    /// <summary>The source's jobs after its first runs, newest first, once at least <paramref name="expectedJobs"/> exist and none runs.</summary>
    protected async Task<List<JsonNode>> JobsWhenDoneAsync(string id, int expectedJobs)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(120);
        var firstRuns = _firstRuns.GetValueOrDefault(id)?.Count ?? 0;
        while (true)
        {
            var jobs = (await Api.GetAsync($"{SourceUrl(id)}jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().Select(j => j!).ToList();
            if (jobs.Count >= expectedJobs + firstRuns && jobs.All(j => j["status"]!.GetValue<string>() != "Running")) return jobs[..^firstRuns];
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"jobs did not finish: {string.Join(", ", jobs.Select(j => j.ToJsonString()))}");
            await Task.Delay(100);
        }
    }

    /// <summary>Every row as the text of each column, sorted: the comparison SYNC.md §2 asks for (json as jsonb).</summary>
    protected static async Task<List<string>> RowsAsync(string connectionString, string table, IReadOnlyList<string> columns, string? jsonColumn = null)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        var select = string.Join(" || '|' || ", columns.Select(c => c == jsonColumn ? $"coalesce(\"{c}\"::jsonb::text, '<null>')" : $"coalesce(\"{c}\"::text, '<null>')"));
        await using var command = new NpgsqlCommand($"SELECT {select} FROM {table}", connection);
        var rows = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0));
        rows.Sort(StringComparer.Ordinal);
        return rows;
    }

    /// <summary>The warehouse table equals the source table, column by column.</summary>
    protected async Task ShouldMatchAsync(string sourceTable, string warehouseTable, params string[] columns) =>
        (await RowsAsync(WarehouseConnection, $"{Warehouse}.{warehouseTable}", columns)).ShouldBe(await RowsAsync(SourceConnection, sourceTable, columns));

    protected async Task<long> ScalarAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(WarehouseConnection);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
