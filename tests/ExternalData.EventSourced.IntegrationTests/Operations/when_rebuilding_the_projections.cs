using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using JasperFx.Events.Daemon;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>An operator rebuilding the inline projections from the events (Marten's rebuild) gets back exactly the
/// documents the service had kept, for a wide source and a narrow one, updated, bulk-updated, refreshed and deleted,
/// and for sources whose CDC was turned on, changed, published to, turned off, and deleted with its clean-up.</summary>
public sealed class when_rebuilding_the_projections(AppFixture app) : IntegrationContext(app)
{
    private static readonly string[] Documents = ["mt_doc_source", "mt_doc_sourcedetails", "mt_doc_sourceschema"];

    private async Task<SortedDictionary<string, string>> SnapshotAsync()
    {
        var rows = new SortedDictionary<string, string>(StringComparer.Ordinal);
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        foreach (var table in Documents)
        {
            await using var command = new NpgsqlCommand($"SELECT id::text, data::text FROM {App.Schema}.{table} WHERE tenant_id = @tenant", connection);
            command.Parameters.AddWithValue("tenant", ProjectId);
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync()) rows[$"{table}/{reader.GetString(0)}"] = reader.GetString(1);
        }

        return rows;
    }

    [Fact]
    public async Task every_read_model_comes_back_equal_to_what_it_was()
    {
        var wide = await ScratchDatabase.CreateAsync(App.Server, ScratchDatabase.WideTables(300) + "CREATE TABLE public.extra (id int PRIMARY KEY);", "rebuild");
        var wideSource = (await Api.PostAsync(Sources, CreateBody(prefix: "wide", config: wide.Config(),
            schemas: [new JsonObject { ["name"] = "t1", ["should_sync"] = true, ["sync_type"] = "full_refresh" }]))).ShouldHaveStatus(HttpStatusCode.Created).Json;
        var wideId = wideSource["id"]!.GetValue<string>();
        var narrow = await CreateSourceAsync(prefix: "narrow");
        var narrowId = narrow["id"]!.GetValue<string>();
        var gone = (await CreateSourceAsync(prefix: "gone"))["id"]!.GetValue<string>();

        await Api.PatchAsync(SourceUrl(narrowId), new JsonObject { ["description"] = "changed" });
        var ids = wideSource["schemas"]!.AsArray().Take(40).Select(s => (JsonNode)new JsonObject { ["id"] = s!["id"]!.GetValue<string>(), ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        (await Api.PatchAsync($"{SourceUrl(wideId)}bulk_update_schemas/", new JsonObject { ["schemas"] = new JsonArray(ids.ToArray()) })).ShouldHaveStatus(HttpStatusCode.OK);
        await wide.ExecuteAsync("DROP TABLE public.t2; DROP TABLE public.t1; CREATE TABLE public.brand_new (id int PRIMARY KEY); ALTER TABLE public.t3 ADD COLUMN c int;");
        (await Api.SendAsync(HttpMethod.Post, $"{SourceUrl(wideId)}refresh_schemas/")).ShouldHaveStatus(HttpStatusCode.OK);
        (await Api.DeleteAsync(SourceUrl(gone))).ShouldHaveStatus(HttpStatusCode.NoContent);

        var cdcDb = await CdcDatabase.CreateAsync(App.Server);
        var streaming = await CdcSourceAsync(cdcDb, "streaming");
        (await Api.PostAsync($"{SourceUrl(streaming)}update_cdc_settings/", new JsonObject { ["cdc_lag_warning_threshold_mb"] = 99 })).ShouldHaveStatus(HttpStatusCode.OK);
        var customers = (await Api.GetAsync(SourceUrl(streaming))).Json["schemas"]!.AsArray().First(x => x!["name"]!.GetValue<string>() == "customers")!["id"]!.GetValue<string>();
        (await Api.PatchAsync($"{SourceUrl(streaming)}bulk_update_schemas/", new JsonObject
        {
            ["schemas"] = new JsonArray(new JsonObject { ["id"] = customers, ["should_sync"] = true, ["sync_type"] = "cdc" }),
        })).ShouldHaveStatus(HttpStatusCode.OK);
        var stopped = await CdcSourceAsync(cdcDb, "stopped");
        (await Api.PostAsync($"{SourceUrl(stopped)}disable_cdc/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        var cleaned = await CdcSourceAsync(cdcDb, "cleaned");
        (await Api.DeleteAsync(SourceUrl(cleaned))).ShouldHaveStatus(HttpStatusCode.NoContent);
        for (var i = 0; i < 300 && !(await EventTypesAsync(cleaned)).Contains("source_secrets_shredded"); i++) await Task.Delay(100);
        (await EventTypesAsync(cleaned)).ShouldContain("source_secrets_shredded");

        var stripe = (await Api.PostAsync(Sources, new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["stripe_secret_key"] = FakeStripeServer.FullKey, ["schemas"] = new JsonArray(new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
            },
        })).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        (await Api.PostAsync($"{SourceUrl(stripe)}create_webhook/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        (await Api.PostAsync($"{SourceUrl(stripe)}create_webhook/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        var stripeTables = (await Api.GetAsync(SourceUrl(stripe))).Json["schemas"]!.AsArray().Count;

        var before = await SnapshotAsync();
        before.Keys.Count(k => k.StartsWith("mt_doc_sourceschema/", StringComparison.Ordinal)).ShouldBe(302 + PublicTables + 2 * CdcTables + stripeTables,
            "the deleted sources' schemas are gone; a removed table's document stays, hidden, to be revived");

        var store = App.Host.Services.GetRequiredService<IDocumentStore>();
        using var daemon = await store.BuildProjectionDaemonAsync();
        await daemon.RebuildProjectionAsync<Source>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<SourceDetailsProjection>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<SourceSchemaProjection>(CancellationToken.None);

        var after = await SnapshotAsync();
        after.Keys.ShouldBe(before.Keys);
        foreach (var (key, data) in before) JsonNode.DeepEquals(JsonNode.Parse(after[key]), JsonNode.Parse(data)).ShouldBeTrue(key);
        (await Api.GetAsync(SourceUrl(wideId))).ShouldHaveStatus(HttpStatusCode.OK).Json["schemas"]!.AsArray().Count.ShouldBe(301, "t2 was removed, brand_new added");
        await cdcDb.DropAsync();
    }

    /// <summary>The tables of a <see cref="CdcDatabase"/>.</summary>
    private const int CdcTables = 6;

    private async Task<string> CdcSourceAsync(CdcDatabase db, string prefix)
    {
        var config = db.Config();
        config["cdc_enabled"] = true;
        var created = await Api.PostAsync(Sources, CreateBody(prefix: prefix, config: config,
            schemas: [new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "cdc" }]));
        return created.ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
    }
}
