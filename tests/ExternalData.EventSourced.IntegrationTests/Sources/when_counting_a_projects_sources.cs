using System.Net;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

/// <summary>ADR 0033: the list's count is kept by the store per project, in the transaction of each create and delete,
/// so it is exact under concurrent creates and never reads the project's documents.</summary>
public sealed class when_counting_a_projects_sources(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task concurrent_creates_and_deletes_leave_the_exact_count()
    {
        var created = await Task.WhenAll(Enumerable.Range(0, 12).Select(n => CreateSourceAsync(prefix: $"counted{n}")));
        var ids = created.Select(c => c["id"]!.GetValue<string>()).ToList();

        var list = (await Api.GetAsync($"{Sources}?limit=5")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        list["count"]!.GetValue<int>().ShouldBe(12);
        list["results"]!.AsArray().Count.ShouldBe(5);

        await Task.WhenAll(ids.Take(3).Select(async id => (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent)));
        (await Api.GetAsync(Sources)).Json["count"]!.GetValue<int>().ShouldBe(9);
        // counted1 is deleted; counted10 and counted11 match.
        (await Api.GetAsync($"{Sources}?search=counted1")).Json["count"]!.GetValue<int>().ShouldBe(2, "a search counts its matches");

        var otherProject = $"/api/projects/{Random.Shared.Next(100_000, int.MaxValue)}/external_data_sources/";
        (await Api.GetAsync(otherProject)).Json["count"]!.GetValue<int>().ShouldBe(0);

        // The count is what the store holds, not a count of the page: the counter row itself says 9.
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT count FROM {App.Schema}.ed_source_counts WHERE tenant_id = @tenant", connection);
        command.Parameters.AddWithValue("tenant", ProjectId);
        ((long)(await command.ExecuteScalarAsync())!).ShouldBe(9);
    }
}
