using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Sources;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Refreshing;

/// <summary>Rediscovery reconciles the schemas with what the database has now (ref §7.3), as one event, and names
/// the columns that appeared or vanished in enabled tables.</summary>
public sealed class when_refreshing_schemas(AppFixture app) : IntegrationContext(app)
{
    private const string Tables = """
        CREATE TABLE public.keep_me (id int PRIMARY KEY, updated_at timestamptz, note text);
        CREATE TABLE public.gone_enabled (id int PRIMARY KEY, v text);
        CREATE TABLE public.gone_never (id int PRIMARY KEY);
        CREATE TABLE public.stays_disabled (id int PRIMARY KEY);
        """;

    private static JsonArray Enabled() =>
    [
        new JsonObject { ["name"] = "keep_me", ["should_sync"] = true, ["sync_type"] = "incremental", ["incremental_field"] = "updated_at", ["incremental_field_type"] = "timestamp" },
        new JsonObject { ["name"] = "gone_enabled", ["should_sync"] = true, ["sync_type"] = "full_refresh" },
    ];

    private string RefreshUrl(string id) => $"{SourceUrl(id)}refresh_schemas/";

    private static Dictionary<string, JsonNode> ByName(JsonNode source) =>
        source["schemas"]!.AsArray().ToDictionary(s => s!["name"]!.GetValue<string>(), s => s!);

    [Fact]
    public async Task added_dropped_and_altered_tables_are_reconciled_in_one_event_that_the_response_and_a_read_agree_with()
    {
        var database = await ScratchDatabase.CreateAsync(App.Server, Tables);
        var created = await CreateSourceAsync(config: database.Config(), schemas: Enabled());
        var id = created["id"]!.GetValue<string>();
        var before = ByName(created);

        await database.ExecuteAsync("""
            DROP TABLE public.gone_enabled; DROP TABLE public.gone_never;
            CREATE TABLE public.new_table (id int PRIMARY KEY, created_at timestamptz);
            ALTER TABLE public.keep_me ADD COLUMN extra text; ALTER TABLE public.keep_me DROP COLUMN note;
            COMMENT ON TABLE public.stays_disabled IS 'now described';
            """);

        var result = (await Api.SendAsync(HttpMethod.Post, RefreshUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json;
        result["added"]!.GetValue<int>().ShouldBe(1);
        result["deleted"]!.GetValue<int>().ShouldBe(1);
        result["total_tables_seen"]!.GetValue<int>().ShouldBe(3);
        var drift = result["column_changes"]!.AsArray().ShouldHaveSingleItem()!;
        drift["name"]!.GetValue<string>().ShouldBe("keep_me");
        drift["columns_added"]!.AsArray().Select(c => c!.GetValue<string>()).ShouldBe(["extra"]);
        drift["columns_removed"]!.AsArray().Select(c => c!.GetValue<string>()).ShouldBe(["note"]);

        await using (var session = App.Host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId))
        {
            var events = (await session.Events.FetchStreamAsync(Guid.Parse(id))).Skip(5).Select(e => e.Data).ToList();
            var added = events.OfType<SchemaAdded>().ShouldHaveSingleItem();
            added.Name.ShouldBe("new_table");
            added.Settings.ShouldSync.ShouldBeFalse();
            var refreshed = events.OfType<SchemasRefreshed>().ShouldHaveSingleItem();
            refreshed.Added.ShouldBe(["new_table"]);
            refreshed.Removed.Select(r => r.Name).ShouldBe(["gone_never"]);
            refreshed.Disabled.Select(r => r.Name).ShouldBe(["gone_enabled"]);
            refreshed.FactsChanged.Select(f => f.Name).Order().ShouldBe(["keep_me", "stays_disabled"]);
            refreshed.ColumnDrift.ShouldHaveSingleItem().Appeared.ShouldBe(["extra"]);
            refreshed.TotalTablesSeen.ShouldBe(3);
        }

        var after = ByName((await Api.GetAsync(SourceUrl(id))).Json);
        after.Keys.Order().ShouldBe(["gone_enabled", "keep_me", "new_table", "stays_disabled"]);
        after["gone_enabled"]["should_sync"]!.GetValue<bool>().ShouldBeFalse();
        after["gone_enabled"]["id"]!.GetValue<string>().ShouldBe(before["gone_enabled"]["id"]!.GetValue<string>());
        after["keep_me"]["should_sync"]!.GetValue<bool>().ShouldBeTrue();
        after["keep_me"]["available_columns"]!.AsArray().Select(c => c!["name"]!.GetValue<string>()).ShouldBe(["id", "updated_at", "extra"]);
        after["stays_disabled"]["description"]!.GetValue<string>().ShouldBe("now described");
        after["new_table"]["should_sync"]!.GetValue<bool>().ShouldBeFalse();
    }

    [Fact]
    public async Task a_table_that_comes_back_is_revived_with_its_old_id_and_a_second_refresh_changes_nothing()
    {
        var database = await ScratchDatabase.CreateAsync(App.Server, Tables);
        var created = await CreateSourceAsync(config: database.Config(), schemas: Enabled());
        var id = created["id"]!.GetValue<string>();
        var oldId = ByName(created)["gone_never"]["id"]!.GetValue<string>();

        await database.ExecuteAsync("DROP TABLE public.gone_never;");
        (await Api.SendAsync(HttpMethod.Post, RefreshUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json["deleted"]!.GetValue<int>().ShouldBe(1);
        ByName((await Api.GetAsync(SourceUrl(id))).Json).ShouldNotContainKey("gone_never");

        await database.ExecuteAsync("CREATE TABLE public.gone_never (id int PRIMARY KEY, back boolean);");
        (await Api.SendAsync(HttpMethod.Post, RefreshUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json["added"]!.GetValue<int>().ShouldBe(1);
        var revived = ByName((await Api.GetAsync(SourceUrl(id))).Json)["gone_never"];
        revived["id"]!.GetValue<string>().ShouldBe(oldId);
        revived["available_columns"]!.AsArray().Count.ShouldBe(2);

        var again = (await Api.SendAsync(HttpMethod.Post, RefreshUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json;
        (again["added"]!.GetValue<int>(), again["deleted"]!.GetValue<int>(), again["column_changes"]!.AsArray().Count).ShouldBe((0, 0, 0));
    }

    [Fact]
    public async Task an_unreachable_database_is_a_400_in_posthogs_words_and_changes_nothing()
    {
        var database = await ScratchDatabase.CreateAsync(App.Server, Tables);
        var id = (await CreateSourceAsync(config: database.Config(), schemas: Enabled()))["id"]!.GetValue<string>();
        var events = await EventCountAsync(id);
        await database.DropAsync();

        var response = await Api.SendAsync(HttpMethod.Post, RefreshUrl(id));
        response.ShouldHaveStatus(HttpStatusCode.BadRequest);
        response.ContentType.ShouldBe("application/problem+json");
        (await EventCountAsync(id)).ShouldBe(events);
        (await Api.SendAsync(HttpMethod.Post, RefreshUrl(Guid.NewGuid().ToString()))).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
    }

    [Fact]
    public async Task a_direct_source_rediscovers_when_its_connection_changes()
    {
        var first = await ScratchDatabase.CreateAsync(App.Server, "CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE public.b (id int PRIMARY KEY);");
        var second = await ScratchDatabase.CreateAsync(App.Server, "CREATE TABLE public.b (id int PRIMARY KEY, more text); CREATE TABLE public.c (id int PRIMARY KEY);");
        var body = CreateBody(prefix: "Live", config: first.Config(), schemas: [new JsonObject { ["name"] = "a", ["should_sync"] = true }]);
        body["access_method"] = "direct";
        var id = (await Api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();

        var config = second.Config();
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = config })).ShouldHaveStatus(HttpStatusCode.OK);

        var schemas = ByName((await Api.GetAsync(SourceUrl(id))).Json);
        // a was enabled, so it stays (disabled); b is refreshed; c is new.
        schemas.Keys.Order().ShouldBe(["a", "b", "c"]);
        schemas["a"]["should_sync"]!.GetValue<bool>().ShouldBeFalse();
        schemas["b"]["available_columns"]!.AsArray().Count.ShouldBe(2);
    }
}
