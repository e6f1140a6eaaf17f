using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;
using Xunit.Abstractions;

namespace ExternalData.EventSourced.IntegrationTests.Discovery;

/// <summary>
/// Discovery must cost a constant number of round trips whatever the table count. Every statement Npgsql sends
/// is seen through its ActivitySource, so the count is of what really went over the wire to the source database.
/// </summary>
public sealed class when_discovering_a_large_database(AppFixture app, ITestOutputHelper output) : IntegrationContext(app)
{
    private const int ManyTables = 2000;

    [Fact]
    public async Task the_number_of_catalog_statements_does_not_grow_with_the_table_count()
    {
        var small = await CreateDatabaseAsync(10);
        var large = await CreateDatabaseAsync(ManyTables);

        var (smallStatements, smallTables, _) = await PreviewAsync(small);
        var (largeStatements, largeTables, elapsed) = await PreviewAsync(large);

        smallTables.ShouldBe(10);
        largeTables.ShouldBe(ManyTables);
        largeStatements.ShouldBe(smallStatements);
        largeStatements.ShouldBeInRange(1, 2);
        output.WriteLine($"database_schema over {ManyTables} tables: {largeStatements} statement(s) sent, {elapsed.TotalMilliseconds:F0} ms end to end");
    }

    private async Task<(int Statements, int Tables, TimeSpan Elapsed)> PreviewAsync(string database)
    {
        var statements = new ConcurrentBag<string>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (Equals(activity.GetTagItem("db.name") ?? activity.GetTagItem("db.namespace"), database))
                    statements.Add(activity.DisplayName);
            },
        };
        ActivitySource.AddActivityListener(listener);

        var admin = new NpgsqlConnectionStringBuilder(App.Server.AdminConnectionString);
        var body = new JsonObject
        {
            ["source_type"] = "Postgres", ["host"] = App.Source.Host, ["port"] = App.Source.Port, ["database"] = database,
            ["user"] = admin.Username, ["password"] = admin.Password, ["schema"] = "public",
        };
        var stopwatch = Stopwatch.StartNew();
        var preview = (await Api.PostAsync($"{Sources}database_schema/", body)).ShouldHaveStatus(HttpStatusCode.OK).Json;
        stopwatch.Stop();
        return (statements.Count, preview.AsArray().Count, stopwatch.Elapsed);
    }

    private async Task<string> CreateDatabaseAsync(int tables)
    {
        var name = $"many_{tables}_{Guid.NewGuid():N}"[..24];
        await using (var admin = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres")))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        await using var db = new NpgsqlConnection(App.Server.ConnectionStringFor(name));
        await db.OpenAsync();
        await using var command = new NpgsqlCommand($"""
            DO $$ BEGIN
              FOR i IN 1..{tables} LOOP
                EXECUTE format('CREATE TABLE public.t%s (id int PRIMARY KEY, updated_at timestamptz, amount numeric, note text)', i);
              END LOOP;
            END $$;
            """, db) { CommandTimeout = 300 };
        await command.ExecuteNonQueryAsync();
        return name;
    }
}
