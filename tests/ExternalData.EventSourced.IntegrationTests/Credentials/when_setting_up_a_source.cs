using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Infrastructure.Encryption;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Credentials;

/// <summary>setup goes from credentials (inline or a stash) to a source with sensible defaults in one call, and
/// consumes a stash exactly once (ref §5.15, §7, §8).</summary>
public sealed class when_setting_up_a_source(AppFixture app, Xunit.Abstractions.ITestOutputHelper output) : IntegrationContext(app)
{
    private string SetupUrl => $"{Sources}setup/";

    private async Task<string> StashAsync(JsonObject? config = null) =>
        (await Api.PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = config ?? PostgresConfig() }))
        .ShouldHaveStatus(HttpStatusCode.Created).Json["credential_id"]!.GetValue<string>();

    private static JsonObject Setup(JsonObject payload, string? prefix = null, JsonArray? tables = null, string sourceType = "Postgres") =>
        new() { ["source_type"] = sourceType, ["payload"] = payload, ["prefix"] = prefix, ["tables"] = tables };

    [Fact]
    public async Task a_stash_becomes_a_source_and_can_never_be_used_again()
    {
        var credential = await StashAsync();

        var result = (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = credential }, prefix: "agent"))).ShouldHaveStatus(HttpStatusCode.Created).Json;
        var id = result["id"]!.GetValue<string>();
        result["source"]!["id"]!.GetValue<string>().ShouldBe(id);
        result["source"]!["prefix"]!.GetValue<string>().ShouldBe("agent");
        result["source"]!["job_inputs"]!.AsObject().ContainsKey("password").ShouldBeFalse();
        (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json["schemas"]!.AsArray().Count.ShouldBe(PublicTables);

        (await Api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().ShouldBeEmpty();
        (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = credential }, prefix: "again")))
            .ShouldBeProblem(HttpStatusCode.BadRequest, $"Stored credential '{credential}' not found or expired", "payload.credential_id");

        await using var session = App.Host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId);
        var stream = await session.Events.FetchStreamAsync(Guid.Parse(credential));
        stream.Select(e => e.Data.GetType().Name).ShouldBe(["CredentialsStashed", "CredentialsConsumed"]);
        stream[1].Data.ShouldBeOfType<CredentialsConsumed>().SourceId.ShouldBe(Guid.Parse(id));
        (await session.LoadAsync<DataKey>(Guid.Parse(credential))).ShouldBeNull("consuming a stash shreds its key");
    }

    [Fact]
    public async Task stored_values_win_over_inline_ones_and_a_failed_setup_leaves_the_stash_usable()
    {
        var credential = await StashAsync();
        var inline = new JsonObject { ["credential_id"] = credential, ["password"] = "inline-loses", ["database"] = "nope" };

        (await Api.PostAsync(SetupUrl, Setup(inline, prefix: "winner"))).ShouldHaveStatus(HttpStatusCode.Created);

        var other = await StashAsync();
        await CreateSourceAsync(prefix: "taken");
        (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = other }, prefix: "taken"))).ShouldBeProblem(HttpStatusCode.BadRequest, "Prefix already exists", "prefix");
        (await Api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().Select(s => s!["credential_id"]!.GetValue<string>()).ShouldBe([other]);
        (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = other }, prefix: "free"))).ShouldHaveStatus(HttpStatusCode.Created);
    }

    [Fact]
    public async Task unknown_malformed_or_mismatched_credentials_and_unknown_tables_are_refused()
    {
        var missing = Guid.NewGuid().ToString();
        (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = missing })))
            .ShouldBeProblem(HttpStatusCode.BadRequest, $"Stored credential '{missing}' not found or expired");
        (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = "not-a-uuid" })))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Stored credential 'not-a-uuid' not found or expired");

        var credential = await StashAsync();
        App.Stripe.RegisterKey("rk_test_setup_mismatch", "/v1/charges");
        (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = credential }, sourceType: "Stripe")))
            .ShouldBeProblem(HttpStatusCode.BadRequest, $"Stored credential '{credential}' is for 'Postgres', not 'Stripe'");
        (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = credential }, tables: ["orders", "ghosts"])))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Table 'ghosts' was not found in the source. Discovered tables: see database_schema.", "tables");
        (await Api.PostAsync(SetupUrl, new JsonObject { ["payload"] = new JsonObject() })).ShouldBeProblem(HttpStatusCode.BadRequest, "This field is required.", "source_type");

        (await EventCountAsync()).ShouldBe(1, "only the stash itself was recorded");
    }

    [Fact]
    public async Task an_empty_database_is_refused_and_inline_credentials_work_without_a_stash()
    {
        var empty = await ScratchDatabase.CreateAsync(App.Server, "CREATE SCHEMA nothing_here;");
        (await Api.PostAsync(SetupUrl, Setup(empty.Config()))).ShouldBeProblem(HttpStatusCode.BadRequest, "No tables found for this source. Check the credentials and permissions.");

        var only = (await Api.PostAsync(SetupUrl, Setup(PostgresConfig(), tables: ["orders"]))).ShouldHaveStatus(HttpStatusCode.Created).Json;
        only["source"]!["schemas"]!.AsArray().Where(s => s!["should_sync"]!.GetValue<bool>()).Select(s => s!["name"]!.GetValue<string>()).ShouldBe(["orders"]);
        only["source"]!["schemas"]!.AsArray().Count.ShouldBe(PublicTables, "the rest are recorded, disabled");
    }

    [Fact]
    public async Task every_table_gets_posthogs_default_sync_settings()
    {
        var database = await ScratchDatabase.CreateAsync(App.Server, """
            CREATE TABLE public.with_updated (id bigint PRIMARY KEY, created_at timestamptz, updated_at timestamptz);
            CREATE TABLE public.with_created (id bigint PRIMARY KEY, created_at timestamptz, note text);
            CREATE TABLE public.with_int_key (id int PRIMARY KEY, note text);
            CREATE TABLE public.no_candidates (code text PRIMARY KEY, note text);
            CREATE TABLE public.no_primary_key (note text, changed_at timestamp);
            CREATE VIEW public.a_view AS SELECT id, updated_at FROM public.with_updated;
            CREATE TABLE public.forbidden (id int PRIMARY KEY, updated_at timestamptz);
            DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'setup_reader') THEN CREATE ROLE setup_reader LOGIN PASSWORD 'setup-pw'; END IF; END $$;
            GRANT SELECT ON public.with_updated, public.with_created, public.with_int_key, public.no_candidates, public.no_primary_key, public.a_view TO setup_reader;
            """);
        var config = database.Config();
        config["user"] = "setup_reader";
        config["password"] = "setup-pw";

        var schemas = (await Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = await StashAsync(config) })))
            .ShouldHaveStatus(HttpStatusCode.Created).Json["source"]!["schemas"]!.AsArray()
            .ToDictionary(s => s!["name"]!.GetValue<string>(), s => s!);

        (string?, string?, bool) Chosen(string table) => (schemas[table]["sync_type"]?.GetValue<string>(), schemas[table]["incremental_field"]?.GetValue<string>(),
            schemas[table]["should_sync"]!.GetValue<bool>());
        Chosen("with_updated").ShouldBe(("incremental", "updated_at", true));
        Chosen("with_created").ShouldBe(("incremental", "created_at", true));
        Chosen("with_int_key").ShouldBe(("incremental", "id", true));
        Chosen("no_candidates").ShouldBe(("full_refresh", null, true));
        Chosen("no_primary_key").ShouldBe(("incremental", "changed_at", true));
        schemas["no_primary_key"]["primary_key_columns"].ShouldBeNull();
        schemas["with_updated"]["primary_key_columns"]!.AsArray().Select(c => c!.GetValue<string>()).ShouldBe(["id"]);
        schemas["with_updated"]["incremental_field_type"]!.GetValue<string>().ShouldBe("timestamp");
        schemas["with_int_key"]["incremental_field_type"]!.GetValue<string>().ShouldBe("integer");
        Chosen("forbidden").ShouldBe((null, null, false));
        schemas["a_view"]["should_sync"]!.GetValue<bool>().ShouldBeTrue();
        schemas.Values.ShouldAllBe(s => s!["sync_type"] == null || s["sync_type"]!.GetValue<string>() != "cdc");
    }

    [Fact]
    public async Task fifty_concurrent_setups_with_one_stash_create_exactly_one_source()
    {
        var credential = await StashAsync();

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(i =>
            Api.PostAsync(SetupUrl, Setup(new JsonObject { ["credential_id"] = credential }, prefix: $"race_{i}"))));

        responses.Count(r => r.Status == HttpStatusCode.Created).ShouldBe(1);
        responses.Where(r => r.Status != HttpStatusCode.Created).ShouldAllBe(r =>
            (r.Status == HttpStatusCode.BadRequest && r.Json["code"]!.GetValue<string>() == "credential_not_found") || r.Status == HttpStatusCode.Conflict);
        (await Api.GetAsync(Sources)).Json["count"]!.GetValue<int>().ShouldBe(1);
        output.WriteLine($"50 setups with one stash: {responses.Count(r => r.Status == HttpStatusCode.Created)} x 201, " +
                          $"{responses.Count(r => r.Status == HttpStatusCode.BadRequest)} x 400, {responses.Count(r => r.Status == HttpStatusCode.Conflict)} x 409");
    }
}
