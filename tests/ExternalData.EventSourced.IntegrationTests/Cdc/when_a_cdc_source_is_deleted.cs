using System.Net;
using System.Text.Json.Nodes;
using Alba;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Marten;
using Marten.Services;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Cdc;

/// <summary>Removal without orphans (issue 8 §4): the slot and publication go with the source, with its own
/// credentials, and only then is its key shredded; a failure is retried, then recorded with the SQL to run; a
/// process that dies in between finishes after restart. And a create whose commit fails leaves nothing behind.</summary>
public sealed class when_a_cdc_source_is_deleted(AppFixture app) : IntegrationContext(app)
{
    private static JsonArray OrdersByCdc() => [new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "cdc" }];

    private static JsonObject CdcBody(CdcDatabase db)
    {
        var config = db.Config();
        config["cdc_enabled"] = true;
        config["schemas"] = OrdersByCdc();
        return new JsonObject { ["source_type"] = "Postgres", ["payload"] = config };
    }

    private static async Task<(string Id, string Slot, string Publication)> CreateAsync(ApiClient api, string sources, CdcDatabase db)
    {
        var created = (await api.PostAsync(sources, CdcBody(db))).ShouldHaveStatus(HttpStatusCode.Created).Json;
        return (created["id"]!.GetValue<string>(), created["cdc"]!["slot_name"]!.GetValue<string>(), created["cdc"]!["publication_name"]!.GetValue<string>());
    }

    private async Task<IReadOnlyList<string>> WaitForAsync(string id, string type, string? schema = null)
    {
        for (var i = 0; i < 300; i++)
        {
            var types = await EventTypesAsync(id, schema);
            if (types.Contains(type)) return types;
            await Task.Delay(100);
        }

        throw new TimeoutException($"no {type} event within 30 s: {string.Join(", ", await EventTypesAsync(id, schema))}");
    }

    private async Task SetConnectionsAsync(CdcDatabase db, bool allowed)
    {
        await using var admin = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await admin.OpenAsync();
        await using var command = new NpgsqlCommand($"ALTER DATABASE {db.Name} ALLOW_CONNECTIONS {(allowed ? "true" : "false")}", admin);
        await command.ExecuteNonQueryAsync();
    }

    private async Task<bool> ResourcesExistAsync(CdcDatabase db, string slot, string publication) =>
        await db.ScalarAsync<bool>($"SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}') OR EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{publication}')");

    private static async Task<bool> KeyExistsAsync(IAlbaHost host, string projectId, string id)
    {
        await using var session = host.Services.GetRequiredService<IDocumentStore>().QuerySession(projectId);
        return await session.LoadAsync<DataKey>(Guid.Parse(id)) is not null;
    }

    /// <summary>A host of its own, on a schema of its own, so its clean-up schedule and restarts touch nothing else.</summary>
    private async Task<(IAlbaHost Host, ApiClient Api)> IsolatedHostAsync(string schema, string retryDelays, Action<IServiceCollection>? services = null)
    {
        var settings = new Dictionary<string, string> { ["ExternalData:Database:Schema"] = schema };
        var delays = retryDelays.Split(',');
        for (var i = 0; i < delays.Length; i++) settings[$"ExternalData:Cleanup:RetryDelaysSeconds:{i}"] = delays[i];
        var host = await App.StartHostAsync(allowPrivateHosts: true, services, settings);
        var key = await AppFixture.IssueKeyAsync(host, "cdc-test", Scopes.All, [ApiKey.AllProjects]);
        return (host, new ApiClient(host.Server.CreateClient(), key));
    }

    [Fact]
    public async Task the_slot_and_publication_are_dropped_before_the_key_is_shredded()
    {
        var db = await CdcDatabase.CreateAsync(App.Server);
        try
        {
            var (id, slot, publication) = await CreateAsync(Api, Sources, db);
            (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);
            (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NotFound);

            var types = await WaitForAsync(id, "source_secrets_shredded");
            types.SkipWhile(t => t != "source_deleted").ShouldBe(["source_deleted", "cdc_resources_dropped", "source_secrets_shredded"]);
            (await ResourcesExistAsync(db, slot, publication)).ShouldBeFalse();
            (await KeyExistsAsync(App.Host, ProjectId, id)).ShouldBeFalse();

            var dropped = (await Api.GetAsync($"{SourceUrl(id)}history/?type=cdc_resources_dropped")).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
            dropped["data"]!["slot_dropped"]!.GetValue<bool>().ShouldBeTrue();
            dropped["data"]!["publication_dropped"]!.GetValue<bool>().ShouldBeTrue();
            dropped["created_via"]!.GetValue<string>().ShouldBe("api");
        }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public async Task an_unreachable_database_is_retried_then_recorded_with_the_sql_to_run_and_the_key_is_shredded_anyway()
    {
        var schema = $"edcdc_{Guid.NewGuid():N}"[..20];
        var (host, api) = await IsolatedHostAsync(schema, "0.2,0.2");
        var db = await CdcDatabase.CreateAsync(App.Server);
        try
        {
            var (id, slot, publication) = await CreateAsync(api, Sources, db);
            await SetConnectionsAsync(db, allowed: false);
            (await api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);

            var types = await WaitForAsync(id, "source_secrets_shredded", schema);
            types.SkipWhile(t => t != "source_deleted").ShouldBe(
                ["source_deleted", "cdc_cleanup_attempt_failed", "cdc_cleanup_attempt_failed", "cdc_cleanup_abandoned", "source_secrets_shredded"]);
            var abandoned = (await api.GetAsync($"{SourceUrl(id)}history/?type=cdc_cleanup_abandoned")).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
            abandoned["data"]!["remediation_sql"]!.GetValue<string>().ShouldBe($"SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION IF EXISTS \"{publication}\";");
            abandoned["data"]!["attempts"]!.GetValue<int>().ShouldBe(3);
            (await KeyExistsAsync(host, ProjectId, id)).ShouldBeFalse();

            await SetConnectionsAsync(db, allowed: true);
            (await ResourcesExistAsync(db, slot, publication)).ShouldBeTrue(); // what the recorded SQL is for
        }
        finally
        {
            await SetConnectionsAsync(db, allowed: true);
            await host.DisposeAsync();
            await db.DropAsync();
        }
    }

    [Fact]
    public async Task a_process_that_stops_before_the_clean_up_has_it_finished_by_the_next_one()
    {
        var schema = $"edcdc_{Guid.NewGuid():N}"[..20];
        var (first, api) = await IsolatedHostAsync(schema, "2");
        var db = await CdcDatabase.CreateAsync(App.Server);
        IAlbaHost? second = null;
        try
        {
            var (id, slot, publication) = await CreateAsync(api, Sources, db);
            await SetConnectionsAsync(db, allowed: false);
            (await api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);
            await WaitForAsync(id, "cdc_cleanup_attempt_failed", schema);
            await first.DisposeAsync();
            first = null;

            await SetConnectionsAsync(db, allowed: true);
            (await ResourcesExistAsync(db, slot, publication)).ShouldBeTrue();
            (second, _) = await IsolatedHostAsync(schema, "2");

            var types = await WaitForAsync(id, "source_secrets_shredded", schema);
            types.SkipWhile(t => t != "source_deleted").ShouldBe(["source_deleted", "cdc_cleanup_attempt_failed", "cdc_resources_dropped", "source_secrets_shredded"]);
            (await ResourcesExistAsync(db, slot, publication)).ShouldBeFalse();
            (await KeyExistsAsync(second, ProjectId, id)).ShouldBeFalse();
        }
        finally
        {
            await SetConnectionsAsync(db, allowed: true);
            if (first is not null) await first.DisposeAsync();
            if (second is not null) await second.DisposeAsync();
            await db.DropAsync();
        }
    }

    /// <summary>Fault injection: the store refuses the create's commit after the slot and publication were made.</summary>
    private sealed class FailingCommit : DocumentSessionListenerBase
    {
        public string? SlotSeen { get; private set; }

        public override Task BeforeSaveChangesAsync(IDocumentSession session, CancellationToken token)
        {
            if (session.PendingChanges.Streams().SelectMany(s => s.Events).Select(e => e.Data).OfType<CdcEnabled>().FirstOrDefault() is { } enabled)
            {
                SlotSeen = enabled.SlotName;
                throw new InvalidOperationException("the store refused the commit (injected)");
            }

            return Task.CompletedTask;
        }
    }

    [Fact]
    public async Task a_create_whose_commit_fails_after_provisioning_leaves_nothing_on_the_source_database()
    {
        var schema = $"edcdc_{Guid.NewGuid():N}"[..20];
        var listener = new FailingCommit();
        var (host, api) = await IsolatedHostAsync(schema, "1", services => services.ConfigureMarten(o => o.Listeners.Add(listener)));
        var db = await CdcDatabase.CreateAsync(App.Server);
        try
        {
            var response = await api.PostAsync(Sources, CdcBody(db));
            response.Status.ShouldBe(HttpStatusCode.InternalServerError);
            response.Text.ShouldNotContain("injected");
            listener.SlotSeen.ShouldNotBeNull();
            (await db.ScalarAsync<long>("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")).ShouldBe(0);
            (await db.ScalarAsync<long>("SELECT count(*) FROM pg_publication")).ShouldBe(0);
            (await api.GetAsync(Sources)).Json["count"]!.GetValue<int>().ShouldBe(0);
        }
        finally
        {
            await host.DisposeAsync();
            await db.DropAsync();
        }
    }
}
