using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>
/// ADR 0032: a database written before one document per source has Source snapshots without the fields the old
/// SourceDetails read model held, and that model's table. The first node of this version to start rebuilds the
/// Source documents from the events before it answers, then drops the old table; the next start does nothing.
/// The nodes run on a schema of their own, since the rebuild rewrites every source document in it.
/// </summary>
public sealed class when_upgrading_to_one_document_per_source(AppFixture app) : IntegrationContext(app)
{
    private readonly string _schema = $"upgrade_{Guid.NewGuid():N}"[..20];

    [Fact]
    public async Task the_first_start_rebuilds_the_source_documents_and_drops_the_old_table()
    {
        string url, before;
        ApiClient api;
        await using (var first = await ServiceProcess.StartAsync(App.Server.ServiceConnectionString, _schema, App.Stripe.ApiBase))
        {
            api = new ApiClient(new HttpClient { BaseAddress = new Uri(first.BaseUrl) }, await IssueKeyAsync());
            var created = (await api.PostAsync(Sources, CreateBody(prefix: "upgraded", description: "kept"))).ShouldHaveStatus(HttpStatusCode.Created).Json;
            url = SourceUrl(created["id"]!.GetValue<string>());
            (await api.PatchAsync(url, new JsonObject { ["description"] = "patched before the upgrade" })).ShouldHaveStatus(HttpStatusCode.OK);
            // The table's first run ends, and its next one is armed, first: work still queued would be done by the upgraded
            // node and change the source.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (true)
            {
                before = (await api.GetAsync(url)).ShouldHaveStatus(HttpStatusCode.OK).Text;
                var source = JsonNode.Parse(before)!;
                var settled = source["status"]!.GetValue<string>() != "Running"
                              && source["schemas"]!.AsArray().All(s => !s!["should_sync"]!.GetValue<bool>() || s["next_sync_at"] is not null);
                if (settled || DateTime.UtcNow > deadline) break;
                await Task.Delay(200);
            }
        }

        // What a pre-0032 database looks like: snapshots without the read model's fields, and the read model's table.
        await ExecuteAsync($"""
            UPDATE {_schema}.mt_doc_source SET data = data - 'CreatedBy' - 'CreatedVia' - 'Engine' - 'UpdatedAt' - 'WebhookShown';
            CREATE TABLE {_schema}.mt_doc_sourcedetails (tenant_id varchar NOT NULL, id uuid NOT NULL, data jsonb NOT NULL);
            """);
        (await ScalarAsync<long>($"SELECT count(*) FROM {_schema}.mt_doc_source WHERE data ? 'CreatedBy'")).ShouldBe(0);

        await using (var upgraded = await ServiceProcess.StartAsync(App.Server.ServiceConnectionString, _schema, App.Stripe.ApiBase))
        {
            upgraded.Output.ShouldContain("Source documents upgraded");
            (await ScalarAsync<bool>($"SELECT to_regclass('{_schema}.mt_doc_sourcedetails') IS NULL")).ShouldBeTrue("the old table is dropped");
            var client = new ApiClient(new HttpClient { BaseAddress = new Uri(upgraded.BaseUrl) }, await IssueKeyAsync());
            var after = (await client.GetAsync(url)).ShouldHaveStatus(HttpStatusCode.OK).Text;
            JsonNode.DeepEquals(JsonNode.Parse(after), JsonNode.Parse(before)).ShouldBeTrue($"before: {before}\nafter: {after}");
            JsonNode.Parse(after)!["created_by"]!.GetValue<string>().ShouldNotBeNullOrEmpty();
        }

        await using (var again = await ServiceProcess.StartAsync(App.Server.ServiceConnectionString, _schema, App.Stripe.ApiBase))
        {
            again.Output.ShouldNotContain("Upgrading source documents", customMessage: "an upgraded database is left as it is");
        }
    }

    private Task<string> IssueKeyAsync() => DirectKeys.IssueAsync(App.Server.ConnectionStringFor("postgres"), _schema, "upgrade");

    private async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
