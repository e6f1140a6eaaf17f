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
        CREATE TABLE public.many (id int PRIMARY KEY, v text);
        INSERT INTO public.many SELECT g, 'v' || g FROM generate_series(1, 3000) g;
        ANALYZE public.many;
        """;

    private SyncSchedulerSettings Scheduler => App.Host.Services.GetRequiredService<SyncSchedulerSettings>();

    public override async Task DisposeAsync()
    {
        Scheduler.ReconcileEvery = TimeSpan.FromMinutes(5);
        Scheduler.OverdueGrace = TimeSpan.FromMinutes(2);
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

    [Fact]
    public async Task readiness_reports_overdue_schedules_and_failing_schemas()
    {
        await CreateAsync("ready", FullRefresh("plain"));
        var ready = (await App.Anonymous().GetAsync("/health/ready")).ShouldHaveStatus(HttpStatusCode.OK).Json["checks"]!["syncs"]!;
        ready["data"]!["running_syncs"].ShouldNotBeNull();

        // Every armed schedule counts as overdue once the grace reaches back past its due time: the count is what the check reads.
        Scheduler.OverdueGrace = TimeSpan.FromHours(-7);
        // Overdue schedules do not take the node out: still 200.
        var degraded = (await App.Anonymous().GetAsync("/health/ready")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        degraded["checks"]!["syncs"]!["status"]!.GetValue<string>().ShouldBe("Degraded");
        degraded["checks"]!["syncs"]!["data"]!["overdue_schedules"]!.GetValue<int>().ShouldBeGreaterThan(0);
        degraded["checks"]!["syncs"]!["description"]!.GetValue<string>().ShouldContain("sync schedule(s) overdue");
    }

    [Fact]
    public async Task the_syncs_command_lists_schemas_and_cancels_a_running_job()
    {
        var settings = App.Host.Services.GetRequiredService<SyncRunSettings>();
        var id = await CreateAsync("operated", FullRefresh("many"));
        var schemaId = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "many")!["id"]!.GetValue<string>();

        var (listExit, listed, listErr) = await ServiceCommand.RunAsync(App, "syncs", "list", "--project", ProjectId);
        listExit.ShouldBe(0, listErr);
        listed.Split('\n').Single(l => l.Contains(schemaId, StringComparison.Ordinal)).ShouldContain("Completed");

        // A run held after its first batch, cancelled by the operator, stops at its next batch boundary.
        using var held = new SemaphoreSlim(0);
        using var release = new SemaphoreSlim(0);
        settings.PageSize = 300;
        settings.AfterBatchCommitted = async (_, batch) =>
        {
            if (batch != 1) return;
            held.Release();
            await release.WaitAsync(TimeSpan.FromSeconds(60));
        };
        try
        {
            (await Api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
            (await held.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBeTrue("the run committed its first batch");
            var (runningExit, running, _) = await ServiceCommand.RunAsync(App, "syncs", "list", "--running", "--project", ProjectId);
            runningExit.ShouldBe(0);
            running.ShouldContain(schemaId);
            var (cancelExit, cancelled, cancelErr) = await ServiceCommand.RunAsync(App, "syncs", "cancel", "--schema", schemaId);
            cancelExit.ShouldBe(0, cancelErr);
            cancelled.ShouldContain("Cancelled the running job");
        }
        finally
        {
            release.Release();
            settings.AfterBatchCommitted = null;
            settings.PageSize = 50_000;
        }

        var job = (await JobsWhenDoneAsync(id, 1))[0];
        job["status"]!.GetValue<string>().ShouldBe("Cancelled", job.ToJsonString());
        job["rows_synced"]!.GetValue<long>().ShouldBeLessThan(3000, "it stopped at a batch boundary");
        (await ServiceCommand.RunAsync(App, "syncs", "cancel", "--schema", schemaId)).Stderr.ShouldContain("No running sync to cancel.");
        var history = (await Api.GetAsync($"{SourceUrl(id)}history/?include=syncs&type=sync_run_cancelled")).Json["results"]!.AsArray();
        history.ShouldHaveSingleItem()!["actor"]!["name"]!.GetValue<string>().ShouldBe("system:operator");
    }

    [Fact]
    public async Task the_syncs_command_runs_a_schema_now_on_a_node_of_the_cluster()
    {
        var id = await CreateAsync("operatorrun", FullRefresh("plain"));
        var schemaId = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "plain")!["id"]!.GetValue<string>();
        await Db.ExecuteAsync("INSERT INTO public.plain SELECT g, 'new ' || g FROM generate_series(11, 25) g;");

        // A separate process, no node of the cluster: the run it starts is taken up by the running service.
        var (exit, output, error) = await ServiceCommand.RunAsync(App, "syncs", "run", "--schema", schemaId);
        exit.ShouldBe(0, error);
        output.ShouldContain("Started job");

        var job = (await JobsWhenDoneAsync(id, 1)).ShouldHaveSingleItem();
        job["status"]!.GetValue<string>().ShouldBe("Completed", job.ToJsonString());
        job["trigger"]!.GetValue<string>().ShouldBe("manual");
        output.ShouldContain(job["id"]!.GetValue<string>());
        await ShouldMatchAsync("public.plain", "operatorrunpostgres_plain", "id", "v");
        var started = (await Api.GetAsync($"{SourceUrl(id)}history/?include=syncs&type=sync_run_started")).Json["results"]!.AsArray()
            .Where(e => e!["actor"]!["name"]!.GetValue<string>() == "system:operator").ToList();
        started.ShouldHaveSingleItem("the operator's run is recorded as the operator's");

        // A schema already running, or none, is refused with the use case's own words.
        (await ServiceCommand.RunAsync(App, "syncs", "run", "--schema", Guid.NewGuid().ToString())).ExitCode.ShouldNotBe(0);
    }

    [Fact]
    public async Task a_run_whose_message_is_gone_from_every_inbox_is_ended_and_its_schedule_goes_on()
    {
        var id = await CreateAsync("orphan", FullRefresh("many"));
        var schemaId = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["name"]!.GetValue<string>() == "many")!["id"]!.GetValue<string>();
        var settings = App.Host.Services.GetRequiredService<SyncRunSettings>();
        settings.PageSize = 1000;
        using var held = new SemaphoreSlim(0);
        using var release = new SemaphoreSlim(0);
        settings.AfterBatchCommitted = async (_, batch) =>
        {
            if (batch != 1) return;
            held.Release();
            await release.WaitAsync(TimeSpan.FromSeconds(60));
        };
        JsonNode job;
        try
        {
            (await Api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
            (await held.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBeTrue("the run committed its first batch");
            Scheduler.OverdueGrace = TimeSpan.FromSeconds(1);
            Scheduler.ReconcileEvery = TimeSpan.FromSeconds(1);
            await Task.Delay(TimeSpan.FromSeconds(1.5));

            // Healthy: its message is in the inbox (the run is in it), so a pass leaves it running.
            await App.Host.Services.GetRequiredService<IMessageBus>().SendAsync(new ReconcileSyncSchedules());
            await Task.Delay(TimeSpan.FromSeconds(2.5));
            (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray()[0]!["status"]!.GetValue<string>().ShouldBe("Running");

            // Lost: as if it had been dead-lettered, the message is in no inbox any more.
            await using (var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres")))
            {
                await connection.OpenAsync();
                await using var delete = new NpgsqlCommand($"DELETE FROM {App.Schema}.wolverine_incoming_envelopes WHERE message_type LIKE '%RunSyncJob%'", connection);
                (await delete.ExecuteNonQueryAsync()).ShouldBeGreaterThanOrEqualTo(1);
            }

            var deadline = DateTime.UtcNow.AddSeconds(30);
            while ((job = (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray()[0]!)["status"]!.GetValue<string>() == "Running")
            {
                if (DateTime.UtcNow > deadline) throw new ShouldAssertException("the lost run was not ended");
                await Task.Delay(200);
            }
        }
        finally
        {
            release.Release();
            settings.AfterBatchCommitted = null;
            settings.PageSize = 50_000;
        }

        job["status"]!.GetValue<string>().ShouldBe("Failed", job.ToJsonString());
        job["error_class"]!.GetValue<string>().ShouldBe("internal");
        job["latest_error"]!.GetValue<string>().ShouldBe(FailLostRun.Error);
        await Task.Delay(TimeSpan.FromSeconds(1)); // the released run finds it no longer holds the schema and stops
        (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray()[0]!["status"]!.GetValue<string>().ShouldBe("Failed", "the ended run does not come back");
        var schema = (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().Single(s => s!["id"]!.GetValue<string>() == schemaId)!;
        schema["should_sync"]!.GetValue<bool>().ShouldBeTrue("a lost run is the service's failure, never a reason to disable");
        schema["next_sync_at"].ShouldNotBeNull("the schedule goes on");
        var failed = (await Api.GetAsync($"{SourceUrl(id)}history/?include=syncs&type=sync_run_failed")).Json["results"]!.AsArray().ShouldHaveSingleItem()!;
        failed["actor"]!["name"]!.GetValue<string>().ShouldBe("system:schedule-reconciler");

        // The next run starts and completes as usual.
        (await ReloadAndWaitAsync(id, 2))[0]["status"]!.GetValue<string>().ShouldBe("Completed");
        (await ScalarAsync($"SELECT count(*) FROM {Warehouse}.orphanpostgres_many")).ShouldBe(3000);
    }
}
