using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;
using Wolverine;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>
/// A schedule never silently stops (SYNC.md §5, PostHog #82900): with the service running, the schema's scheduled due
/// message is deleted from the store; the reconciler finds the schedule lost, arms it again, and records that it did,
/// as itself. A healthy schedule it leaves alone.
/// </summary>
public sealed class when_a_schedule_is_lost(AppFixture app) : SyncContext(app, Tables, "lost")
{
    private const string Tables = """
        CREATE TABLE public.plain (id int PRIMARY KEY, v text);
        INSERT INTO public.plain SELECT g, 'v' || g FROM generate_series(1, 10) g;
        """;

    private SyncSchedulerSettings Scheduler => App.Host.Services.GetRequiredService<SyncSchedulerSettings>();

    public override async Task DisposeAsync()
    {
        Scheduler.ReconcileEvery = TimeSpan.FromMinutes(5);
        await base.DisposeAsync();
    }

    private async Task<long> ScheduledDueAsync(string schemaId)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            $"SELECT count(*) FROM {App.Schema}.wolverine_incoming_envelopes WHERE message_type LIKE '%SyncDue%' AND status = 'Scheduled' AND position(@id::bytea in body) > 0",
            connection);
        command.Parameters.AddWithValue("id", System.Text.Encoding.UTF8.GetBytes(schemaId));
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private async Task<List<JsonNode>> ReArmsAsync(string id) =>
        (await Api.GetAsync($"{SourceUrl(id)}history/?include=syncs&type=sync_scheduled&limit=1000")).ShouldHaveStatus(HttpStatusCode.OK).Json["results"]!.AsArray()
        .Where(e => e!["summary"]!.GetValue<string>().Contains("the schedule was lost", StringComparison.Ordinal)).Select(e => e!).ToList();

    [Fact]
    public async Task a_deleted_due_message_is_found_and_the_schedule_armed_again_and_recorded()
    {
        var id = await CreateAsync("lost", FullRefresh("plain"));
        var schema = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "plain")!;
        var schemaId = schema["id"]!.GetValue<string>();
        var nextSyncAt = schema["next_sync_at"]!.GetValue<DateTimeOffset>();
        (await ScheduledDueAsync(schemaId)).ShouldBe(1, "armed after its first run");

        // The loop runs every second for this test: a healthy schedule is left as it is.
        Scheduler.ReconcileEvery = TimeSpan.FromSeconds(1);
        await App.Host.Services.GetRequiredService<IMessageBus>().SendAsync(new ReconcileSyncSchedules());
        await Task.Delay(TimeSpan.FromSeconds(3));
        (await ReArmsAsync(id)).ShouldBeEmpty("nothing was lost yet");
        (await ScheduledDueAsync(schemaId)).ShouldBe(1);

        await using (var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres")))
        {
            await connection.OpenAsync();
            await using var delete = new NpgsqlCommand(
                $"DELETE FROM {App.Schema}.wolverine_incoming_envelopes WHERE message_type LIKE '%SyncDue%' AND position(@id::bytea in body) > 0", connection);
            delete.Parameters.AddWithValue("id", System.Text.Encoding.UTF8.GetBytes(schemaId));
            (await delete.ExecuteNonQueryAsync()).ShouldBe(1);
        }

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await ScheduledDueAsync(schemaId) == 0)
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException("the lost schedule was not armed again");
            await Task.Delay(200);
        }

        var rearmed = (await ReArmsAsync(id)).ShouldHaveSingleItem();
        rearmed["actor"]!["name"]!.GetValue<string>().ShouldBe("system:schedule-reconciler");
        rearmed["created_via"]!.GetValue<string>().ShouldBe("system");
        rearmed["summary"]!.GetValue<string>().ShouldContain("is gone from the store");
        (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "plain")!["next_sync_at"]!
            .GetValue<DateTimeOffset>().ShouldBe(nextSyncAt, "armed again for the same time");
        await Task.Delay(TimeSpan.FromSeconds(2));
        (await ReArmsAsync(id)).Count.ShouldBe(1, "armed once, not on every pass");
    }
}
