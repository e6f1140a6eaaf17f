using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.WideSources;

/// <summary>
/// A source over 2,000 tables answers exactly as one over 2 does (shape and values), and no event it records is
/// bigger than 64 KB: a source-level change never repeats the tables (ADR 0016).
/// </summary>
public sealed class when_a_source_has_thousands_of_tables(AppFixture app) : IntegrationContext(app)
{
    private const int Wide = 2_000;
    private const int EventSizeLimit = 64 * 1024;

    private static JsonArray FirstTableIncremental() =>
    [
        new JsonObject { ["name"] = "t1", ["should_sync"] = true, ["sync_type"] = "incremental", ["incremental_field"] = "updated_at", ["incremental_field_type"] = "timestamp" },
    ];

    private async Task<long> LargestEventAsync(string id)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            $"SELECT max(octet_length(data::text)) FROM {App.Schema}.mt_events WHERE tenant_id = @tenant AND stream_id = @stream::uuid", connection);
        command.Parameters.AddWithValue("tenant", ProjectId);
        command.Parameters.AddWithValue("stream", id);
        return (long)(int)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Walks one source through every use case and returns what a caller saw at each step, with the
    /// parts that differ by nature (ids, times, versions, the table count, the prefix) taken out.</summary>
    private async Task<List<JsonNode>> WalkAsync(ScratchDatabase database, string prefix, int tables)
    {
        var seen = new List<JsonNode>();
        var created = (await Api.PostAsync(Sources, CreateBody(prefix: prefix, config: database.Config(), schemas: FirstTableIncremental())))
            .ShouldHaveStatus(HttpStatusCode.Created).Json;
        var id = created["id"]!.GetValue<string>();
        created["schemas"]!.AsArray().Count.ShouldBe(tables);
        created["version"]!.GetValue<int>().ShouldBe(1 + tables);
        seen.Add(Comparable(created, keepSchemas: ["t1", "t2"]));

        var patched = (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "patched", ["direct_query_enabled"] = false })).ShouldHaveStatus(HttpStatusCode.OK).Json;
        seen.Add(Comparable(patched, keepSchemas: []));

        var t2 = created["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "t2")!["id"]!.GetValue<string>();
        var bulk = (await Api.PatchAsync($"{SourceUrl(id)}bulk_update_schemas/", new JsonObject
        {
            ["schemas"] = new JsonArray(new JsonObject { ["id"] = t2, ["should_sync"] = true, ["sync_type"] = "full_refresh", ["sync_frequency"] = "12hour" }),
        })).ShouldHaveStatus(HttpStatusCode.OK).Json;
        seen.Add(Strip(bulk.DeepClone()));

        var retrieved = (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json;
        retrieved["schemas"]!.AsArray().Count.ShouldBe(tables);
        retrieved["schemas"]!.AsArray().Select(s => s!["name"]!.GetValue<string>()).ShouldBe(
            retrieved["schemas"]!.AsArray().Select(s => s!["name"]!.GetValue<string>()).Order(StringComparer.Ordinal), "schemas are ordered by name");
        seen.Add(Comparable(retrieved, keepSchemas: ["t1", "t2"]));

        var asCreated = (await Api.GetAsync($"{SourceUrl(id)}?as_of={1 + tables}")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        asCreated["description"].ShouldBeNull();
        asCreated["schemas"]!.AsArray().Count.ShouldBe(tables);
        seen.Add(Comparable(asCreated, keepSchemas: ["t1", "t2"]));

        (await LargestEventAsync(id)).ShouldBeLessThan(EventSizeLimit);
        (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);
        (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NotFound);
        return seen;
    }

    private static JsonNode Comparable(JsonNode source, string[] keepSchemas)
    {
        var copy = source.DeepClone().AsObject();
        foreach (var key in new[] { "id", "created_at", "updated_at", "version", "prefix" }.Concat(RunDependent)) copy.Remove(key);
        if (copy["job_inputs"] is JsonObject inputs) inputs.Remove("database");
        if (copy["schemas"] is JsonArray schemas)
        {
            copy["schemas"] = new JsonArray(schemas.Where(s => keepSchemas.Contains(s!["name"]!.GetValue<string>())).Select(s => Strip(s!.DeepClone())).ToArray());
        }

        return copy;
    }

    /// <summary>What differs between two sources for reasons other than their width: ids, and what their background runs
    /// have done by the time of the read (status, run times, tables, errors).</summary>
    private static readonly string[] RunDependent = ["id", "status", "last_run_at", "last_synced_at", "latest_error", "table", "next_sync_at"];

    private static JsonNode Strip(JsonNode node)
    {
        if (node is JsonArray array) foreach (var item in array) Strip(item!);
        if (node is JsonObject o)
        {
            foreach (var key in RunDependent) o.Remove(key);
            if (o["schemas"] is JsonArray schemas) Strip(schemas);
        }

        return node;
    }

    [Fact]
    public async Task it_answers_every_use_case_as_a_narrow_source_does_and_records_no_event_over_64_kb()
    {
        var narrow = await ScratchDatabase.CreateAsync(App.Server, ScratchDatabase.WideTables(2), "narrow");
        var wide = await ScratchDatabase.CreateAsync(App.Server, ScratchDatabase.WideTables(Wide), "wide");

        var narrowSeen = await WalkAsync(narrow, "narrow", 2);
        var wideSeen = await WalkAsync(wide, "wide", Wide);

        for (var step = 0; step < narrowSeen.Count; step++)
            wideSeen[step].ToJsonString().ShouldBe(narrowSeen[step].ToJsonString(), $"step {step}");
    }
}
