using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Cdc;

/// <summary>cdc_status reads the slot live (ref §5.7, API.md §6): WAL held back by an unconsumed slot grows, and
/// the level follows the thresholds; an unreachable database is a 400 within the connect timeout.</summary>
public sealed class when_reading_cdc_health(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task writes_nobody_consumes_grow_retained_wal_and_lag_until_the_level_turns_warning_then_critical()
    {
        var db = await CdcDatabase.CreateAsync(App.Server);
        try
        {
            var config = db.Config();
            config["cdc_enabled"] = true;
            var created = (await Api.PostAsync(Sources, CreateBody(config: config,
                schemas: [new JsonObject { ["name"] = "orders", ["should_sync"] = true, ["sync_type"] = "cdc" }]))).ShouldHaveStatus(HttpStatusCode.Created).Json;
            var id = created["id"]!.GetValue<string>();
            var status = $"{SourceUrl(id)}cdc_status/";

            var before = (await Api.GetAsync(status)).ShouldHaveStatus(HttpStatusCode.OK).Json;
            foreach (var field in new[] { "enabled", "management_mode", "slot_name", "publication_name", "lag_warning_threshold_mb", "lag_critical_threshold_mb",
                         "slot_exists", "publication_exists", "lag_bytes", "published_tables", "retained_wal_bytes", "wal_status", "safe_wal_size", "active", "level" })
                before.AsObject().ContainsKey(field).ShouldBeTrue(field);
            before["slot_exists"]!.GetValue<bool>().ShouldBeTrue();
            before["publication_exists"]!.GetValue<bool>().ShouldBeTrue();
            before["published_tables"]!.AsArray().Select(t => t!.GetValue<string>()).ShouldBe(["public.orders"]);
            before["active"]!.GetValue<bool>().ShouldBeFalse();
            before["wal_status"]!.GetValue<string>().ShouldBe("reserved");
            before["level"]!.GetValue<string>().ShouldBe("ok");
            before["lag_warning_threshold_mb"]!.GetValue<int>().ShouldBe(1024);
            before["lag_critical_threshold_mb"]!.GetValue<int>().ShouldBe(10240);

            await db.ExecuteAsync("INSERT INTO public.orders SELECT g, g, now() FROM generate_series(1, 60000) g");
            var after = (await Api.GetAsync(status)).Json;
            var retained = after["retained_wal_bytes"]!.GetValue<long>();
            (retained - before["retained_wal_bytes"]!.GetValue<long>()).ShouldBeGreaterThan(2 * 1024 * 1024);
            (after["lag_bytes"]!.GetValue<long>() - before["lag_bytes"]!.GetValue<long>()).ShouldBeGreaterThan(2 * 1024 * 1024);

            (await Api.PostAsync($"{SourceUrl(id)}update_cdc_settings/", new JsonObject { ["cdc_lag_warning_threshold_mb"] = 1 })).ShouldHaveStatus(HttpStatusCode.OK);
            (await Api.GetAsync(status)).Json["level"]!.GetValue<string>().ShouldBe("warning");

            // Critical sits 16 MB above what is retained now (the rest of the suite writes to this server too); ~30 MB more crosses it.
            var now = (await Api.GetAsync(status)).Json["retained_wal_bytes"]!.GetValue<long>();
            var criticalMb = (int)(now / (1024 * 1024)) + 16;
            (await Api.PostAsync($"{SourceUrl(id)}update_cdc_settings/", new JsonObject { ["cdc_lag_critical_threshold_mb"] = criticalMb })).ShouldHaveStatus(HttpStatusCode.OK);
            (await Api.GetAsync(status)).Json["level"]!.GetValue<string>().ShouldBe("warning");
            await db.ExecuteAsync("INSERT INTO public.customers SELECT g, repeat('x', 1000) FROM generate_series(1, 30000) g");
            (await Api.GetAsync(status)).Json["level"]!.GetValue<string>().ShouldBe("critical");

            await using (var admin = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres")))
            {
                await admin.OpenAsync();
                await using var block = new NpgsqlCommand($"ALTER DATABASE {db.Name} ALLOW_CONNECTIONS false", admin);
                await block.ExecuteNonQueryAsync();
            }

            var clock = Stopwatch.StartNew();
            var unreachable = await Api.GetAsync(status);
            clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(11));
            unreachable.ShouldHaveStatus(HttpStatusCode.BadRequest);
            unreachable.Json["detail"]!.GetValue<string>().ShouldStartWith("Could not connect to source to read CDC status: ");
        }
        finally
        {
            await using (var admin = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres")))
            {
                await admin.OpenAsync();
                await using var allow = new NpgsqlCommand($"ALTER DATABASE {db.Name} ALLOW_CONNECTIONS true", admin);
                await allow.ExecuteNonQueryAsync();
            }

            await db.DropAsync();
        }
    }
}
