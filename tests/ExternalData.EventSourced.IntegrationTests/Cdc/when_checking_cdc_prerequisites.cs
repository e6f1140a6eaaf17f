using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Cdc;

/// <summary>
/// The prerequisite matrix (cdc-and-stripe.md §1): each row is a real server or database that is wrong in one way,
/// and each asserts the status of every check, so a check that fires for the wrong reason, or stays silent, fails.
/// </summary>
public sealed class when_checking_cdc_prerequisites(AppFixture app, CdcServers servers) : IntegrationContext(app), IClassFixture<CdcServers>
{
    private static readonly string[] Ids =
    [
        "host.allowed", "connect.sql", "connect.replication", "server.version", "server.wal_level", "server.max_wal_senders",
        "server.max_replication_slots", "role.replication", "role.select", "table.primary_key", "table.replica_identity",
        "table.ownership", "publication.can_create", "publication.exists", "publication.tables", "slot.state", "server.is_standby",
        "wal.retention_cap", "txn.long_running", "rls.enabled",
    ];

    /// <summary>What a good server says for two good tables in managed mode with default names.</summary>
    private static Dictionary<string, string> AllGood(string mode = "posthog") => Ids.ToDictionary(id => id, id => id switch
    {
        "publication.exists" when mode == "posthog" => "skip",
        "publication.tables" when mode == "posthog" => "skip",
        "slot.state" => "skip",
        "table.ownership" or "publication.can_create" when mode == "self_managed" => "skip",
        _ => "pass",
    });

    private static Dictionary<string, string> Except(Dictionary<string, string> baseline, params (string Id, string Status)[] changes)
    {
        foreach (var (id, status) in changes) baseline[id] = status;
        return baseline;
    }

    private async Task<JsonNode> CheckAsync(CdcDatabase db, string[] tables, string user = CdcDatabase.Owner, string mode = "posthog",
        string? slot = null, string? publication = null)
    {
        var body = db.Config(user);
        body["source_type"] = "Postgres";
        body["tables"] = new JsonArray(tables.Select(t => (JsonNode?)t).ToArray());
        body["cdc_management_mode"] = mode;
        if (slot is not null) body["cdc_slot_name"] = slot;
        if (publication is not null) body["cdc_publication_name"] = publication;
        return (await Api.PostAsync($"{Sources}check_cdc_prerequisites/", body)).ShouldHaveStatus(HttpStatusCode.OK).Json;
    }

    private static void ShouldReport(JsonNode result, Dictionary<string, string> expected)
    {
        var checks = result["checks"]!.AsArray();
        checks.Select(c => c!["id"]!.GetValue<string>()).ShouldBe(Ids);
        var actual = checks.ToDictionary(c => c!["id"]!.GetValue<string>(), c => c!["status"]!.GetValue<string>());
        var wrong = Ids.Where(id => actual[id] != expected[id]).Select(id => $"{id}: {actual[id]} (expected {expected[id]}; {checks.First(c => c!["id"]!.GetValue<string>() == id)!["message"]})");
        wrong.ShouldBeEmpty();
        foreach (var check in checks.Where(c => c!["status"]!.GetValue<string>() is "fail" or "warn"))
        {
            check!["remediation"]!.GetValue<string>().ShouldNotBeNullOrWhiteSpace();
            check["observed"]!.GetValue<string>().ShouldNotBeNullOrWhiteSpace();
            check["expected"]!.GetValue<string>().ShouldNotBeNullOrWhiteSpace();
        }

        var failed = actual.Values.Contains("fail");
        result["valid"]!.GetValue<bool>().ShouldBe(!failed);
        (result["errors"]!.AsArray().Count > 0).ShouldBe(failed);
    }

    private static IEnumerable<string> Errors(JsonNode result) => result["errors"]!.AsArray().Select(e => e!.GetValue<string>());

    private async Task<T> OnAsync<T>(TestDatabase server, Func<CdcDatabase, Task<T>> run)
    {
        var db = await CdcDatabase.CreateAsync(server);
        try { return await run(db); }
        finally { await db.DropAsync(); }
    }

    [Fact]
    public Task all_good() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, ["orders", "customers"]);
        ShouldReport(result, AllGood());
        result["errors"]!.AsArray().ShouldBeEmpty();
        return true;
    });

    [Fact]
    public Task wal_level_replica() => OnAsync(servers.ReplicaWalLevel, async db =>
    {
        var result = await CheckAsync(db, ["orders", "customers"]);
        ShouldReport(result, Except(AllGood(), ("server.wal_level", "fail")));
        Errors(result).ShouldBe(["wal_level must be set to 'logical' (currently 'replica'). This requires a PostgreSQL server restart after changing the configuration."]);
        return true;
    });

    [Fact]
    public Task role_without_replication() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, ["orders", "customers"], user: CdcDatabase.NoReplication);
        ShouldReport(result, Except(AllGood(), ("role.replication", "fail"), ("connect.replication", "fail")));
        result["checks"]!.AsArray().First(c => c!["id"]!.GetValue<string>() == "role.replication")!["remediation"]!.GetValue<string>()
            .ShouldBe($"ALTER ROLE \"{CdcDatabase.NoReplication}\" WITH REPLICATION;");
        return true;
    });

    [Fact]
    public Task slots_used_up() => OnAsync(servers.NoFreeSlots, async db =>
    {
        var result = await CheckAsync(db, ["orders", "customers"]);
        ShouldReport(result, Except(AllGood(), ("server.max_replication_slots", "fail")));
        Errors(result).ShouldBe(["No replication slot capacity available (2/2 slots in use). Increase max_replication_slots in your PostgreSQL configuration."]);
        return true;
    });

    [Fact]
    public Task table_without_primary_key() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, ["orders", "no_pk"]);
        ShouldReport(result, Except(AllGood(), ("table.primary_key", "fail"), ("table.replica_identity", "fail")));
        Errors(result).ShouldContain("Table 'public.no_pk' has no primary key. CDC requires a primary key on each table.");
        return true;
    });

    [Fact]
    public Task replica_identity_nothing() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, ["orders", "no_identity"]);
        ShouldReport(result, Except(AllGood(), ("table.replica_identity", "fail")));
        result["checks"]!.AsArray().First(c => c!["id"]!.GetValue<string>() == "table.replica_identity")!["remediation"]!.GetValue<string>()
            .ShouldBe("ALTER TABLE \"public\".\"no_identity\" REPLICA IDENTITY DEFAULT;");
        return true;
    });

    [Fact]
    public Task missing_publication_in_self_managed_mode() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, ["orders", "customers"], mode: "self_managed");
        ShouldReport(result, Except(AllGood("self_managed"), ("publication.exists", "fail"), ("publication.tables", "skip")));
        Errors(result).ShouldBe(["Publication 'posthog_pub' does not exist. Create it with: CREATE PUBLICATION posthog_pub FOR TABLE ...;"]);
        return true;
    });

    [Fact]
    public Task publication_missing_a_table() => OnAsync(App.Server, async db =>
    {
        await db.ExecuteAsync($"SET ROLE {CdcDatabase.Owner}; CREATE PUBLICATION partial_pub FOR TABLE public.orders;");
        var result = await CheckAsync(db, ["orders", "customers"], mode: "self_managed", publication: "partial_pub");
        ShouldReport(result, Except(AllGood("self_managed"), ("publication.tables", "fail")));
        result["checks"]!.AsArray().First(c => c!["id"]!.GetValue<string>() == "publication.tables")!["remediation"]!.GetValue<string>()
            .ShouldBe("ALTER PUBLICATION \"partial_pub\" ADD TABLE \"public\".\"customers\";");
        return true;
    });

    [Fact]
    public Task slot_in_another_database() => OnAsync(App.Server, async db =>
    {
        var elsewhere = await CdcDatabase.CreateAsync(App.Server);
        try
        {
            await elsewhere.ExecuteAsync("SELECT pg_create_logical_replication_slot('slot_elsewhere', 'pgoutput')");
            var result = await CheckAsync(db, ["orders", "customers"], slot: "slot_elsewhere");
            ShouldReport(result, Except(AllGood(), ("slot.state", "fail")));
            return true;
        }
        finally { await elsewhere.DropAsync(); }
    });

    [Fact]
    public Task slot_active_under_another_connection() => OnAsync(App.Server, async db =>
    {
        await db.ExecuteAsync($"SET ROLE {CdcDatabase.Owner}; CREATE PUBLICATION consumer_pub FOR TABLE public.orders;");
        await db.ExecuteAsync("SELECT pg_create_logical_replication_slot('slot_busy', 'pgoutput')");
        await using var consumer = new LogicalReplicationConnection(App.Server.ConnectionStringFor(db.Name));
        await consumer.Open();
        using var stop = new CancellationTokenSource();
        var stream = consumer.StartReplication(new PgOutputReplicationSlot("slot_busy"), new PgOutputReplicationOptions("consumer_pub", PgOutputProtocolVersion.V1), stop.Token);
        var consuming = Task.Run(async () =>
        {
            try { await foreach (var _ in stream) { } }
            catch (OperationCanceledException) { }
        });
        try
        {
            for (var i = 0; i < 100 && !await db.ScalarAsync<bool>("SELECT active FROM pg_replication_slots WHERE slot_name = 'slot_busy'"); i++) await Task.Delay(100);
            var result = await CheckAsync(db, ["orders", "customers"], slot: "slot_busy");
            ShouldReport(result, Except(AllGood(), ("slot.state", "fail")));
            result["checks"]!.AsArray().First(c => c!["id"]!.GetValue<string>() == "slot.state")!["observed"]!.GetValue<string>().ShouldContain("active (pid");
            return true;
        }
        finally
        {
            await stop.CancelAsync();
            await consuming;
        }
    });

    [Fact]
    public Task slot_with_the_wrong_plugin() => OnAsync(App.Server, async db =>
    {
        await db.ExecuteAsync("SELECT pg_create_logical_replication_slot('slot_decoding', 'test_decoding')");
        var result = await CheckAsync(db, ["orders", "customers"], slot: "slot_decoding");
        ShouldReport(result, Except(AllGood(), ("slot.state", "fail")));
        result["checks"]!.AsArray().First(c => c!["id"]!.GetValue<string>() == "slot.state")!["message"]!.GetValue<string>().ShouldContain("test_decoding");
        return true;
    });

    [Fact]
    public Task a_usable_existing_slot_passes() => OnAsync(App.Server, async db =>
    {
        await db.ExecuteAsync("SELECT pg_create_logical_replication_slot('slot_ready', 'pgoutput')");
        ShouldReport(await CheckAsync(db, ["orders", "customers"], slot: "slot_ready"), Except(AllGood(), ("slot.state", "pass")));
        return true;
    });

    /// <summary>PostgreSQL matches a logical replication connection (replication=database, what CDC opens) against
    /// the database's pg_hba.conf lines; <c>replication</c> lines govern physical replication only. So a server whose
    /// pg_hba.conf refuses this role every <c>replication</c> line still streams its changes, and the check, which
    /// opens the very connection CDC will, says so rather than guessing from the file.</summary>
    [Fact]
    public Task no_replication_line_in_pg_hba_does_not_stop_logical_replication() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, ["orders", "customers"], user: CdcDatabase.NoReplicationLine);
        ShouldReport(result, AllGood());
        return true;
    });

    /// <summary>What the replication connection check does catch besides a missing privilege: a server whose WAL
    /// senders are all taken refuses the connection CDC needs while ordinary SQL still works.</summary>
    [Fact]
    public Task wal_senders_used_up() => OnAsync(servers.NoFreeWalSenders, async db =>
    {
        await using var holder = new LogicalReplicationConnection(db.Server.ConnectionStringFor(db.Name));
        await holder.Open();
        await holder.IdentifySystem();
        var result = await CheckAsync(db, ["orders", "customers"]);
        ShouldReport(result, Except(AllGood(), ("connect.replication", "fail"), ("server.max_wal_senders", "fail")));
        return true;
    });

    [Fact]
    public Task unbounded_wal_retention_warns() => OnAsync(servers.UnboundedWalRetention, async db =>
    {
        var result = await CheckAsync(db, ["orders", "customers"]);
        ShouldReport(result, Except(AllGood(), ("wal.retention_cap", "warn")));
        result["valid"]!.GetValue<bool>().ShouldBeTrue();
        return true;
    });

    [Fact]
    public Task a_table_the_role_cannot_select() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, ["orders", "secret_table"]);
        ShouldReport(result, Except(AllGood(), ("role.select", "fail")));
        Errors(result).ShouldBe(["No SELECT permission on table 'public.secret_table'."]);
        return true;
    });

    [Fact]
    public Task row_level_security_warns() => OnAsync(App.Server, async db =>
    {
        ShouldReport(await CheckAsync(db, ["orders", "notes"]), Except(AllGood(), ("rls.enabled", "warn")));
        return true;
    });

    [Fact]
    public Task without_tables_the_table_checks_say_they_were_skipped() => OnAsync(App.Server, async db =>
    {
        var result = await CheckAsync(db, []);
        ShouldReport(result, Except(AllGood(), ("role.select", "skip"), ("table.primary_key", "skip"), ("table.replica_identity", "skip"),
            ("table.ownership", "skip"), ("rls.enabled", "skip")));
        return true;
    });

    [Fact]
    public async Task an_unreachable_database_is_posthogs_400_with_every_later_check_skipped()
    {
        var config = PostgresConfig();
        config["port"] = 1;
        config["source_type"] = "Postgres";
        var response = await Api.PostAsync($"{Sources}check_cdc_prerequisites/", config);
        response.ShouldHaveStatus(HttpStatusCode.BadRequest);
        response.Json["detail"]!.GetValue<string>().ShouldStartWith("Could not connect to Postgres to check prerequisites: ");
        var statuses = response.Json["checks"]!.AsArray().Select(c => c!["status"]!.GetValue<string>()).ToList();
        statuses.Take(2).ShouldBe(["pass", "fail"]);
        statuses.Skip(2).ShouldAllBe(s => s == "skip");
    }

    [Theory]
    [InlineData("Stripe", "posthog", "CDC prerequisite checks are only supported for CDC enabled sources.")]
    [InlineData("Postgres", "mirror", "cdc_management_mode must be 'posthog' or 'self_managed'.")]
    public async Task posthogs_refusals_come_before_any_connection(string sourceType, string mode, string detail)
    {
        var body = PostgresConfig();
        body["source_type"] = sourceType;
        body["cdc_management_mode"] = mode;
        (await Api.PostAsync($"{Sources}check_cdc_prerequisites/", body)).ShouldBeProblem(HttpStatusCode.BadRequest, detail);
    }

    [Fact]
    public Task managed_is_accepted_as_the_managed_modes_name() => OnAsync(App.Server, async db =>
    {
        ShouldReport(await CheckAsync(db, ["orders", "customers"], mode: "managed"), AllGood());
        return true;
    });
}
