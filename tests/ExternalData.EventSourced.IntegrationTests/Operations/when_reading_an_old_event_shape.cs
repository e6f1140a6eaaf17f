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

/// <summary>Event schema evolution (ADR 0027): a stream whose first event is the old <c>source_connected</c> JSON,
/// written straight into the store as an older version of the service wrote it, reads correctly through the
/// aggregate, the projections (rebuilt from it) and the history endpoint.</summary>
public sealed class when_reading_an_old_event_shape(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task a_source_connected_event_reads_as_source_created_everywhere()
    {
        // Today's SourceCreated JSON of a real source, reshaped into the old event: tables listed, actor in two fields.
        var template = (await CreateSourceAsync(prefix: "today"))["id"]!.GetValue<string>();
        var oldId = Guid.CreateVersion7();
        await using (var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres")))
        {
            await connection.OpenAsync();
            string data, streamType;
            await using (var read = new NpgsqlCommand(
                $"SELECT e.data::text, s.type FROM {App.Schema}.mt_events e JOIN {App.Schema}.mt_streams s ON s.id = e.stream_id AND s.tenant_id = e.tenant_id " +
                "WHERE e.stream_id = @id AND e.version = 1", connection))
            {
                read.Parameters.AddWithValue("id", Guid.Parse(template));
                await using var reader = await read.ExecuteReaderAsync();
                (await reader.ReadAsync()).ShouldBeTrue();
                (data, streamType) = (reader.GetString(0), reader.GetString(1));
            }

            var current = JsonNode.Parse(data)!.AsObject();
            var old = new JsonObject();
            foreach (var (key, value) in current)
            {
                switch (key)
                {
                    case "TableCount": old["Tables"] = new JsonArray("orders", "customers", "events"); break;
                    case "CreatedBy":
                        old["CreatedByKey"] = value!["ApiKeyId"]!.DeepClone();
                        old["CreatedByName"] = "legacy-importer";
                        break;
                    case "SourceId": old[key] = oldId.ToString(); break;
                    case "Prefix": old[key] = "legacy"; break;
                    default: old[key] = value?.DeepClone(); break;
                }
            }

            old.ContainsKey("Tables").ShouldBeTrue("the stored shape of SourceCreated is what this test assumes");
            await using var write = new NpgsqlCommand($"""
                INSERT INTO {App.Schema}.mt_streams (tenant_id, id, type, version, timestamp, created) VALUES (@tenant, @id, @type, 1, now(), now());
                INSERT INTO {App.Schema}.mt_events (seq_id, id, stream_id, version, data, type, timestamp, tenant_id, headers)
                VALUES (nextval('{App.Schema}.mt_events_sequence'), gen_random_uuid(), @id, 1, @data::jsonb, 'source_connected', now(), @tenant, @headers::jsonb);
                """, connection);
            write.Parameters.AddWithValue("tenant", ProjectId);
            write.Parameters.AddWithValue("id", oldId);
            write.Parameters.AddWithValue("type", streamType);
            write.Parameters.AddWithValue("data", old.ToJsonString());
            write.Parameters.AddWithValue("headers", "{}");
            await write.ExecuteNonQueryAsync();
        }

        var store = App.Host.Services.GetRequiredService<IDocumentStore>();
        await using (var session = store.QuerySession(ProjectId))
        {
            var source = (await session.Events.AggregateStreamAsync<Source>(oldId)).ShouldNotBeNull();
            source.Prefix.ShouldBe("legacy");
            source.SourceType.ShouldBe("Postgres");
            source.ProjectId.ShouldBe(ProjectId);
            var created = (await session.Events.FetchStreamAsync(oldId)).Single().Data.ShouldBeOfType<SourceCreated>();
            created.TableCount.ShouldBe(3);
            created.CreatedBy.Name.ShouldBe("legacy-importer");
        }

        var history = (await Api.GetAsync($"{SourceUrl(oldId.ToString())}history/")).ShouldHaveStatus(HttpStatusCode.OK).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
        history["summary"]!.GetValue<string>().ShouldBe("Postgres source created with prefix 'legacy', 3 tables discovered");
        history["data"]!["table_count"]!.GetValue<int>().ShouldBe(3);
        history["data"]!["secrets"]!.GetValue<string>().ShouldBe("[secret]");
        (await Api.GetAsync($"{SourceUrl(oldId.ToString())}?as_of=1")).ShouldHaveStatus(HttpStatusCode.OK).Json["prefix"]!.GetValue<string>().ShouldBe("legacy");

        using var daemon = await store.BuildProjectionDaemonAsync();
        await daemon.RebuildProjectionAsync<Source>(CancellationToken.None);
        var retrieved = (await Api.GetAsync(SourceUrl(oldId.ToString()))).ShouldHaveStatus(HttpStatusCode.OK).Json;
        retrieved["prefix"]!.GetValue<string>().ShouldBe("legacy");
        retrieved["created_by"]!.GetValue<string>().ShouldBe("legacy-importer");
        (await Api.PatchAsync(SourceUrl(oldId.ToString()), new JsonObject { ["description"] = "still writable" })).ShouldHaveStatus(HttpStatusCode.OK);
    }
}
