using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using JasperFx.Events.Daemon;
using Marten;
using Marten.Events;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>An operator rebuilding the inline projections from the events (Marten's rebuild) gets back exactly the
/// documents the service had kept, for a wide source and a narrow one, updated, bulk-updated, refreshed and deleted,
/// and for sources whose CDC was turned on, changed, published to, turned off, and deleted with its clean-up.</summary>
public sealed class when_rebuilding_the_projections(AppFixture app) : IntegrationContext(app)
{
    /// <summary>Documents that are not read models (nothing rebuilds them): keys, Data Protection's key ring, the
    /// webhook inbox. Every other document table is some projection's, and all of them are compared.</summary>
    private static readonly string[] NotProjections = ["mt_doc_apikey", "mt_doc_dataprotectionkeydocument", "mt_doc_datakey", "mt_doc_webhookdelivery"];

    private readonly string _secondProject = Random.Shared.Next(100_000, int.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private async Task<SortedDictionary<string, string>> SnapshotAsync()
    {
        var rows = new SortedDictionary<string, string>(StringComparer.Ordinal);
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand("SELECT table_name FROM information_schema.columns WHERE table_schema = @schema AND table_name LIKE 'mt_doc_%' AND column_name = 'tenant_id'", connection))
        {
            list.Parameters.AddWithValue("schema", App.Schema);
            await using var reader = await list.ExecuteReaderAsync();
            while (await reader.ReadAsync()) tables.Add(reader.GetString(0));
        }

        tables.ShouldContain("mt_doc_storedcredentialsummary");
        foreach (var table in tables.Except(NotProjections))
        {
            await using var command = new NpgsqlCommand($"SELECT tenant_id || '/' || id::text, data::text FROM {App.Schema}.{table} WHERE tenant_id = ANY(@tenants)", connection);
            command.Parameters.AddWithValue("tenants", new[] { ProjectId, _secondProject });
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync()) rows[$"{table}/{reader.GetString(0)}"] = reader.GetString(1);
        }

        // The audit feed's index is a table of its own, not documents.
        await using (var feed = new NpgsqlCommand(
            $"SELECT tenant_id || '/' || seq_id::text, row_to_json(f)::text FROM {App.Schema}.{ExternalData.EventSourced.Audit.AuditLogProjection.TableName} f WHERE tenant_id = ANY(@tenants)", connection))
        {
            feed.Parameters.AddWithValue("tenants", new[] { ProjectId, _secondProject });
            await using var reader = await feed.ExecuteReaderAsync();
            while (await reader.ReadAsync()) rows[$"{ExternalData.EventSourced.Audit.AuditLogProjection.TableName}/{reader.GetString(0)}"] = reader.GetString(1);
        }

        return rows;
    }

    /// <summary>Waits until no job of the test's projects runs and no event was appended for a second and a half.</summary>
    private async Task QuietAsync(DateTimeOffset deadline)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        async Task<(long Running, long Last)> StateAsync()
        {
            await using var command = new NpgsqlCommand($"""
                SELECT (SELECT count(*) FROM {App.Schema}.mt_doc_syncjob WHERE tenant_id = ANY(@tenants) AND data->>'Status' = 'Running'),
                       (SELECT coalesce(max(seq_id), 0) FROM {App.Schema}.mt_events)
                """, connection);
            command.Parameters.AddWithValue("tenants", new[] { ProjectId, _secondProject });
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            return (reader.GetInt64(0), reader.GetInt64(1));
        }

        var state = await StateAsync();
        while (true)
        {
            await Task.Delay(1500);
            var now = await StateAsync();
            if (now.Running == 0 && now.Last == state.Last) return;
            DateTimeOffset.UtcNow.ShouldBeLessThan(deadline, $"the service goes quiet: {now.Running} job(s) running, events still appended");
            state = now;
        }
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

        // Credentials: one stash consumed by a setup, one left usable, one stored through a connect link, in a second project.
        var consumed = (await Api.PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = PostgresConfig() }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json["credential_id"]!.GetValue<string>();
        (await Api.PostAsync($"{Sources}setup/", new JsonObject { ["source_type"] = "Postgres", ["prefix"] = "from_stash", ["payload"] = new JsonObject { ["credential_id"] = consumed } }))
            .ShouldHaveStatus(HttpStatusCode.Created);
        (await Api.PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = PostgresConfig() })).ShouldHaveStatus(HttpStatusCode.Created);
        var otherSources = $"/api/projects/{_secondProject}/external_data_sources/";
        var link = (await Api.GetAsync($"{otherSources}connect_link/?source_type=Postgres")).Json["connect_url"]!.GetValue<string>();
        (await Api.PostAsync($"{new Uri(link).AbsolutePath}/credentials", new JsonObject { ["payload"] = PostgresConfig() })).ShouldHaveStatus(HttpStatusCode.Created);
        (await Api.PostAsync(otherSources, CreateBody(prefix: "other"))).ShouldHaveStatus(HttpStatusCode.Created);

        // Sync runs of the wide source's enabled tables: their schemas' sync states and their jobs are projections too.
        // The reload starts every job before it answers, so the list is whole at once; wait until none runs.
        (await Api.PostAsync($"{SourceUrl(wideId)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        var deadline = DateTimeOffset.UtcNow.AddSeconds(90);
        while ((await Api.GetAsync($"{SourceUrl(wideId)}jobs/")).Json.AsArray() is var jobs && (jobs.Count == 0 || jobs.Any(j => j!["status"]!.GetValue<string>() == "Running")))
        {
            DateTimeOffset.UtcNow.ShouldBeLessThan(deadline, $"the wide source's run finishes: {jobs.Where(j => j!["status"]!.GetValue<string>() == "Running").Select(j => j!.ToJsonString()).FirstOrDefault()}");
            await Task.Delay(100);
        }

        // The CDC source's consumer loads each of its CDC tables from a snapshot (a job each): they must have ended before the snapshots.
        var cdcTables = (await Api.GetAsync(SourceUrl(streaming))).Json["schemas"]!.AsArray()
            .Where(t => t!["sync_type"]?.GetValue<string>() == "cdc" && t["should_sync"]!.GetValue<bool>()).Select(t => t!["name"]!.GetValue<string>()).ToList();
        while ((await Api.GetAsync($"{SourceUrl(streaming)}jobs/")).Json.AsArray() is var cdcJobs
               && !(cdcTables.All(table => cdcJobs.Any(j => j!["schema"]!["name"]!.GetValue<string>() == table
                                                        && j["mode"]?.GetValue<string>() == "cdc_snapshot" && j["status"]!.GetValue<string>() == "Completed"))
                    && cdcJobs.All(j => j!["status"]!.GetValue<string>() != "Running")))
        {
            // Said with the jobs as they stand: a snapshot that never ends is then diagnosable from the CI log alone.
            DateTimeOffset.UtcNow.ShouldBeLessThan(deadline.AddSeconds(60), $"the CDC table's snapshot finishes: {cdcJobs.ToJsonString()} " +
                (await Api.GetAsync($"{SourceUrl(streaming)}cdc_status/")).Text);
            await Task.Delay(100);
        }

        // Every other run (the other sources' first runs, taken from the shared run queue by whichever node has room) ends,
        // and its next run is armed, before the snapshot: the event log stands still for a moment.
        await QuietAsync(deadline.AddSeconds(90));

        // The audit feed is an async projection: let it catch up, so both snapshots see it whole.
        var store = App.Host.Services.GetRequiredService<IDocumentStore>();
        await store.WaitForNonStaleProjectionDataAsync(TimeSpan.FromSeconds(60));
        var before = await SnapshotAsync();
        var countBefore = (await Api.GetAsync(Sources)).Json["count"]!.GetValue<int>();
        before.Keys.ShouldContain(k => k.StartsWith($"{ExternalData.EventSourced.Audit.AuditLogProjection.TableName}/", StringComparison.Ordinal));
        before.Keys.ShouldContain(k => k.StartsWith("mt_doc_syncjob/", StringComparison.Ordinal));
        before.Keys.ShouldContain(k => k.StartsWith("mt_doc_schemasync/", StringComparison.Ordinal));
        before.Keys.Count(k => k.StartsWith($"mt_doc_storedcredentialsummary/", StringComparison.Ordinal)).ShouldBe(2, "a consumed stash leaves the list");
        before.Keys.Count(k => k.StartsWith("mt_doc_sourceschema/" + ProjectId + "/", StringComparison.Ordinal)).ShouldBe(302 + PublicTables + 2 * CdcTables + stripeTables + PublicTables,
            "the deleted sources' schemas are gone; a removed table's document stays, hidden, to be revived");

        using var daemon = await store.BuildProjectionDaemonAsync();
        await daemon.RebuildProjectionAsync<Source>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<SourceSchemaProjection>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<ExternalData.EventSourced.Credentials.CredentialStash>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<ExternalData.EventSourced.Credentials.StoredCredentialSummaryProjection>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<ExternalData.EventSourced.Credentials.ConnectLinks.ConnectLink>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<ExternalData.EventSourced.Audit.AuditLogProjection>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<SchemaSync>(CancellationToken.None);
        await daemon.RebuildProjectionAsync<SyncJobProjection>(CancellationToken.None);

        var after = await SnapshotAsync();
        (await Api.GetAsync(Sources)).Json["count"]!.GetValue<int>().ShouldBe(countBefore, "the per-project count follows the documents through a rebuild");
        after.Keys.ShouldBe(before.Keys);
        foreach (var (key, data) in before) JsonNode.DeepEquals(JsonNode.Parse(after[key]), JsonNode.Parse(data)).ShouldBeTrue($"{key}: {data} became {after[key]}");
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
