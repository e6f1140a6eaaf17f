using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.IntegrationTests.Webhooks;
using ExternalData.EventSourced.Sources;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Syncing;

/// <summary>
/// Stripe objects into the warehouse (SYNC.md §3.5) through the real Stripe.net client against the suite's Stripe-protocol
/// server, each test on a Stripe account of its own: backfills newest first, append, incremental through the Events API
/// (updates and deletions), the 30-day window, rate limits, a key revoked mid-run, and webhook deliveries drained.
/// </summary>
public sealed class when_stripe_objects_are_synced(AppFixture app) : StripeWebhookContext(app), IAsyncLifetime
{
    private SyncRunSettings Settings => App.Host.Services.GetRequiredService<SyncRunSettings>();
    private string Warehouse => $"warehouse_{ProjectId}";
    private string WarehouseConnection => App.Server.ConnectionStringFor("postgres");
    private TimeSpan _retention;

    public Task InitializeAsync()
    {
        _retention = Settings.WebhookRetention;
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        Settings.WebhookRetention = _retention;
        return Task.CompletedTask;
    }

    private static JsonObject Customer(string syncType) => syncType switch
    {
        "full_refresh" => new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" },
        _ => new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = syncType, ["incremental_field"] = "created", ["incremental_field_type"] = "integer" },
    };

    private async Task<string> CreateAsync(string key, params JsonObject[] schemas)
    {
        var body = new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = key },
                ["schemas"] = new JsonArray(schemas.Select(s => (JsonNode)s).ToArray()),
            },
        };
        return (await Api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
    }

    private async Task<List<JsonNode>> JobsAsync(string id, int atLeast)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(120);
        while (true)
        {
            var jobs = (await Api.GetAsync($"{SourceUrl(id)}jobs/")).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray().Select(j => j!).ToList();
            if (jobs.Count >= atLeast && jobs.All(j => j["status"]!.GetValue<string>() != "Running")) return jobs;
            if (DateTimeOffset.UtcNow > deadline) throw new TimeoutException($"jobs did not finish: {string.Join(", ", jobs.Select(j => j.ToJsonString()))}");
            await Task.Delay(100);
        }
    }

    private async Task<JsonNode> ReloadAsync(string id, int jobsBefore)
    {
        (await Api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        return (await JobsAsync(id, jobsBefore + 1))[0];
    }

    private async Task<List<string>> ColumnAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(WarehouseConnection);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        var values = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) values.Add(await reader.IsDBNullAsync(0) ? "<null>" : reader.GetValue(0).ToString()!);
        return values;
    }

    private static void ShouldBeCompleted(JsonNode job) => job["status"]!.GetValue<string>().ShouldBe("Completed", job.ToJsonString());

    [Fact]
    public async Task a_backfill_of_2500_customers_over_25_pages_lands_every_object_once_in_typed_columns()
    {
        var (key, account) = App.Stripe.NewAccount();
        var seeded = account.Seed("Customer", 2500);
        var id = await CreateAsync(key, Customer("append"));
        var job = (await JobsAsync(id, 1))[0];

        ShouldBeCompleted(job);
        job["rows_synced"]!.GetValue<long>().ShouldBe(2500);
        account.Pages.ShouldBe(25, "100 objects a page, each page read once");
        (await ColumnAsync($"SELECT id FROM {Warehouse}.stripe_customer ORDER BY id")).ShouldBe(seeded.Select(o => o["id"]!.GetValue<string>()).Order(StringComparer.Ordinal).ToList());
        var types = (await ColumnAsync($"""
            SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = '{Warehouse}.stripe_customer'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attname
            """)).ToHashSet();
        foreach (var expected in new[] { "id text", "created timestamp with time zone", "balance bigint", "delinquent boolean", "address jsonb", "metadata jsonb",
                     "preferred_locales jsonb", "email text", "_ph_deleted boolean" })
            types.ShouldContain(expected);
        types.ShouldNotContain(t => t.StartsWith("description ", StringComparison.Ordinal), "a field Stripe only ever sent as null has no type to land in yet");
        var newest = seeded[^1];
        (await ColumnAsync($"SELECT extract(epoch FROM created)::bigint || '|' || balance || '|' || (address->>'city') FROM {Warehouse}.stripe_customer WHERE id = '{newest["id"]}'"))
            .ShouldBe([$"{newest["created"]}|{newest["balance"]}|Lisbon"]);
        (await SchemasAsync(id))["Customer"]["table"]!["name"]!.GetValue<string>().ShouldBe("stripe_customer");
    }

    [Fact]
    public async Task append_reads_only_objects_created_after_the_watermark_and_new_fields_become_columns()
    {
        var (key, account) = App.Stripe.NewAccount();
        account.Seed("Customer", 250);
        var id = await CreateAsync(key, Customer("append"));
        ShouldBeCompleted((await JobsAsync(id, 1))[0]);
        var before = account.Pages;

        await Task.Delay(1100); // a second later by Stripe's clock: created is in whole seconds
        var added = Enumerable.Range(0, 3).Select(_ => account.Create("Customer", c => c["tier"] = "gold")).ToList();
        var job = await ReloadAsync(id, 1);

        ShouldBeCompleted(job);
        job["mode"]!.GetValue<string>().ShouldBe("append");
        job["rows_synced"]!.GetValue<long>().ShouldBe(3);
        (account.Pages - before).ShouldBe(1, "one page holds everything after the watermark");
        (await ColumnAsync($"SELECT count(*) FROM {Warehouse}.stripe_customer")).ShouldBe(["253"]);
        (await ColumnAsync($"SELECT id FROM {Warehouse}.stripe_customer WHERE tier = 'gold' ORDER BY id"))
            .ShouldBe(added.Select(o => o["id"]!.GetValue<string>()).Order(StringComparer.Ordinal).ToList());
    }

    [Fact]
    public async Task incremental_applies_an_update_seen_only_in_customer_updated_and_flags_a_deletion_keeping_its_last_values()
    {
        var (key, account) = App.Stripe.NewAccount();
        var seeded = account.Seed("Customer", 40, TimeSpan.FromHours(2));
        var id = await CreateAsync(key, Customer("incremental"));
        ShouldBeCompleted((await JobsAsync(id, 1))[0]);
        var (changed, gone) = (seeded[3]["id"]!.GetValue<string>(), seeded[7]["id"]!.GetValue<string>());

        account.Update("Customer", changed, c => c["name"] = "First change");
        account.Update("Customer", changed, c => (c["name"], c["balance"]) = ("Latest name", 4242));
        account.Delete("Customer", gone);
        var job = await ReloadAsync(id, 1);

        ShouldBeCompleted(job);
        job["mode"]!.GetValue<string>().ShouldBe("incremental");
        (await ColumnAsync($"SELECT name || '|' || balance || '|' || _ph_deleted FROM {Warehouse}.stripe_customer WHERE id = '{changed}'"))
            .ShouldBe(["Latest name|4242|false"]);
        (await ColumnAsync($"SELECT email || '|' || _ph_deleted || '|' || (_ph_deleted_at IS NOT NULL) FROM {Warehouse}.stripe_customer WHERE id = '{gone}'"))
            .ShouldBe([$"{seeded[7]["email"]}|true|true"]);
        (await ColumnAsync($"SELECT count(*) FROM {Warehouse}.stripe_customer WHERE NOT _ph_deleted")).ShouldBe(["39"]);
    }

    [Fact]
    public async Task a_watermark_older_than_stripes_30_day_event_window_re_reads_every_object_and_says_so()
    {
        var (key, account) = App.Stripe.NewAccount();
        var seeded = account.Seed("Customer", 30, TimeSpan.FromHours(1));
        var id = await CreateAsync(key, Customer("incremental"));
        ShouldBeCompleted((await JobsAsync(id, 1))[0]);

        account.ClockOffset = TimeSpan.FromDays(31);
        // Changed 31 days on: the event is in Stripe's window, but the watermark is not, so the run cannot trust the log alone.
        account.Update("Customer", seeded[0]["id"]!.GetValue<string>(), c => c["name"] = "After the gap");
        var job = await ReloadAsync(id, 1);

        ShouldBeCompleted(job);
        job["mode"]!.GetValue<string>().ShouldBe("full");
        job["note"]!.GetValue<string>().ShouldContain("more than 30 days ago");
        job["rows_synced"]!.GetValue<long>().ShouldBe(30);
        (await ColumnAsync($"SELECT name FROM {Warehouse}.stripe_customer WHERE id = '{seeded[0]["id"]}'")).ShouldBe(["After the gap"]);
    }

    [Fact]
    public async Task a_storm_of_429s_slows_the_run_and_it_completes_exactly()
    {
        var (key, account) = App.Stripe.NewAccount();
        account.Seed("Customer", 300);
        account.OnPage = n =>
        {
            if (n == 2) account.ThrottleNext(5, retryAfterSeconds: 1);
            return Task.CompletedTask;
        };
        var id = await CreateAsync(key, Customer("full_refresh"));
        var job = (await JobsAsync(id, 1))[0];

        ShouldBeCompleted(job);
        account.Throttled.ShouldBe(5);
        job["rows_synced"]!.GetValue<long>().ShouldBe(300);
        (await ColumnAsync($"SELECT count(DISTINCT id) FROM {Warehouse}.stripe_customer")).ShouldBe(["300"]);
    }

    [Fact]
    public async Task a_key_revoked_mid_run_fails_it_says_what_to_do_and_no_stripe_key_is_anywhere()
    {
        var (key, account) = App.Stripe.NewAccount();
        account.Seed("Customer", 600);
        account.OnPage = n =>
        {
            if (n == 3) account.Revoked = true;
            return Task.CompletedTask;
        };
        var id = await CreateAsync(key, Customer("append"));
        var job = (await JobsAsync(id, 1))[0];

        job["status"]!.GetValue<string>().ShouldBe("Failed", job.ToJsonString());
        job["error_class"]!.GetValue<string>().ShouldBe("invalid_credentials");
        job["latest_error"]!.GetValue<string>().ShouldStartWith("Stripe rejected the API key.");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((await SchemasAsync(id))["Customer"]["should_sync"]!.GetValue<bool>())
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException("the schema was not disabled");
            await Task.Delay(100);
        }

        var tables = await ColumnAsync($"SELECT table_name FROM information_schema.tables WHERE table_schema = '{Warehouse}'");
        tables.ShouldNotContain(t => t.StartsWith("_stage_", StringComparison.Ordinal), "a failed load leaves no staging table behind");
        var rows = new List<string>();
        foreach (var table in tables) rows.AddRange(await ColumnAsync($"SELECT t::text FROM {Warehouse}.\"{table}\" t"));
        var everything = string.Join("\n",
            job.ToJsonString(), (await Api.GetAsync(SourceUrl(id))).Json.ToJsonString(), (await Api.GetAsync($"{SourceUrl(id)}history/?limit=1000")).Json.ToJsonString(),
            string.Join("\n", rows),
            string.Join("\n", await ColumnAsync($"SELECT data::text FROM {App.Schema}.mt_events WHERE tenant_id = '{ProjectId}'")));
        everything.ShouldNotContain(key);
        everything.ShouldNotContain(key[^8..]);
    }

    private async Task<(string Id, string Secret, FakeStripeAccount Account)> WebhookSourceAsync()
    {
        var (key, account) = App.Stripe.NewAccount();
        var seeded = account.Seed("Customer", 5, TimeSpan.FromHours(1));
        var id = await StripeSourceAsync(key);
        (await JobsAsync(id, 2)).ShouldAllBe(j => j!["status"]!.GetValue<string>() == "Completed");
        await CreateWebhookAsync(id);
        (await SchemasAsync(id))["Customer"]["sync_type"]!.GetValue<string>().ShouldBe("webhook");
        // Switched from polling: the first webhook run polls the table whole; only later runs drain deliveries.
        (await ReloadAllAsync(id)).Single(j => j["schema"]!["name"]!.GetValue<string>() == "Customer")["mode"]!.GetValue<string>().ShouldBe("full");
        return (id, EndpointsOf(id).Single().Secret, account);
    }

    private async Task DeliverEventAsync(string id, string secret, JsonObject e)
    {
        var body = e.ToJsonString();
        (await DeliverAsync(id, body, FakeStripeServer.Sign(body, secret))).ShouldHaveStatus(HttpStatusCode.OK);
    }

    private async Task<List<string>> DeliveriesAsync(string id) =>
        await ColumnAsync($"SELECT coalesce(processed_at::text, 'unprocessed') FROM {App.Schema}.mt_doc_webhookdelivery WHERE source_id = '{id}' ORDER BY 1");

    [Fact]
    public async Task ten_identical_deliveries_and_three_updates_of_one_object_drain_into_one_row_with_the_latest_values()
    {
        var (id, secret, account) = await WebhookSourceAsync();
        var customer = account.Objects("Customer")[0];
        var now = account.Now.ToUnixTimeSeconds();
        var first = account.AddEvent("customer.updated", Named(customer, "one"), now + 1);
        for (var n = 0; n < 10; n++) await DeliverEventAsync(id, secret, first);
        // Stripe does not promise order: the latest update arrives first, and a brand-new customer only as a delivery.
        await DeliverEventAsync(id, secret, account.AddEvent("customer.updated", Named(customer, "four"), now + 4));
        await DeliverEventAsync(id, secret, account.AddEvent("customer.updated", Named(customer, "two"), now + 2));
        await DeliverEventAsync(id, secret, account.AddEvent("customer.updated", Named(customer, "three"), now + 3));
        var fresh = new JsonObject { ["id"] = "cus_only_by_webhook", ["object"] = "customer", ["created"] = now, ["name"] = "new" };
        await DeliverEventAsync(id, secret, account.AddEvent("customer.created", fresh, now + 5));
        // Discount has no list at Stripe: webhook only, it lands from deliveries alone.
        var discount = new JsonObject { ["id"] = "di_1", ["object"] = "discount", ["start"] = now, ["customer"] = customer["id"]!.GetValue<string>(), ["coupon"] = new JsonObject { ["id"] = "SUMMER" } };
        await DeliverEventAsync(id, secret, account.AddEvent("customer.discount.created", discount, now + 6));
        (await SchemasAsync(id))["Discount"]["sync_type"]!.GetValue<string>().ShouldBe("webhook");
        // A table that is not synced by webhook stores nothing: nothing would ever drain it.
        var invoice = account.AddEvent("invoice.updated", new JsonObject { ["id"] = "in_1", ["object"] = "invoice", ["created"] = now }, now + 7).ToJsonString();
        (await DeliverAsync(id, invoice, FakeStripeServer.Sign(invoice, secret))).ShouldHaveStatus(HttpStatusCode.OK).Json["status"]!.GetValue<string>().ShouldBe("ignored");
        (await SchemasAsync(id))["Customer"]["webhook_events_received"]!.GetValue<long>().ShouldBe(5);

        var jobs = await ReloadAllAsync(id);
        jobs.ShouldAllBe(j => j["status"]!.GetValue<string>() == "Completed");
        var drained = jobs.Single(j => j["schema"]!["name"]!.GetValue<string>() == "Customer");
        ShouldBeCompleted(drained);
        drained["mode"]!.GetValue<string>().ShouldBe("webhook");
        (await ColumnAsync($"SELECT name FROM {Warehouse}.stripe_customer WHERE id = '{customer["id"]}'")).ShouldBe(["four"]);
        (await ColumnAsync($"SELECT name FROM {Warehouse}.stripe_customer WHERE id = 'cus_only_by_webhook'")).ShouldBe(["new"]);
        (await ColumnAsync($"SELECT count(*) FROM {Warehouse}.stripe_customer")).ShouldBe(["6"]);
        (await ColumnAsync($"SELECT customer || '|' || (coupon->>'id') || '|' || extract(epoch FROM start)::bigint FROM {Warehouse}.stripe_discount")).ShouldBe([$"{customer["id"]}|SUMMER|{now}"]);
        (await DeliveriesAsync(id)).ShouldAllBe(d => d != "unprocessed");
        var schema = (await SchemasAsync(id))["Customer"];
        schema["webhook_events_received"]!.GetValue<long>().ShouldBe(5, "drained deliveries still count");
        schema["last_webhook_at"].ShouldNotBeNull();
    }

    [Fact]
    public async Task retention_trims_processed_deliveries_and_keeps_those_within_it()
    {
        Settings.WebhookRetention = TimeSpan.FromSeconds(2);
        var (id, secret, account) = await WebhookSourceAsync();
        var customer = account.Objects("Customer")[0];
        var now = account.Now.ToUnixTimeSeconds();
        await DeliverEventAsync(id, secret, account.AddEvent("customer.updated", Named(customer, "a"), now + 1));
        await DeliverEventAsync(id, secret, account.AddEvent("customer.updated", Named(customer, "b"), now + 2));
        await ReloadAllAsync(id);
        (await DeliveriesAsync(id)).Count.ShouldBe(2, "processed just now: within the retention");

        await Task.Delay(2500);
        await DeliverEventAsync(id, secret, account.AddEvent("customer.updated", Named(customer, "c"), now + 3));
        (await DeliveriesAsync(id)).ShouldContain("unprocessed");
        await ReloadAllAsync(id);

        var left = await DeliveriesAsync(id);
        left.Count.ShouldBe(1, "the two processed past the retention are gone; the one drained now stays");
        left.ShouldNotContain("unprocessed");
        (await ColumnAsync($"SELECT name FROM {Warehouse}.stripe_customer WHERE id = '{customer["id"]}'")).ShouldBe(["c"]);
        (await SchemasAsync(id))["Customer"]["webhook_events_received"]!.GetValue<long>().ShouldBe(3);
    }

    private static JsonObject Named(JsonObject customer, string name)
    {
        var state = (JsonObject)customer.DeepClone();
        state["name"] = name;
        return state;
    }

    /// <summary>Reloads every enabled schema and waits for their runs to end; answers those runs.</summary>
    private async Task<List<JsonNode>> ReloadAllAsync(string id)
    {
        var before = (await Api.GetAsync($"{SourceUrl(id)}jobs/")).Json.AsArray().Count;
        var enabled = (await SchemasAsync(id)).Values.Count(s => s["should_sync"]!.GetValue<bool>());
        (await Api.PostAsync($"{SourceUrl(id)}reload/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK);
        return (await JobsAsync(id, before + enabled))[..enabled];
    }
}
