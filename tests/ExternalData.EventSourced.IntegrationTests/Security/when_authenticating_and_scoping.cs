using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Security;

public sealed class when_authenticating_and_scoping(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task no_key_or_an_unknown_key_answers_401()
    {
        (await App.Anonymous().GetAsync(Sources)).ShouldBeProblem(HttpStatusCode.Unauthorized,
            "Authentication credentials were not provided or are invalid.");
        (await App.Client("edk_not-a-real-key").GetAsync(Sources)).ShouldHaveStatus(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task a_revoked_key_answers_401_once_the_key_cache_window_has_passed()
    {
        var token = await App.IssueKeyAsync("soon-revoked", Scopes.All, [ProjectId]);
        (await App.Client(token).GetAsync(Sources)).ShouldHaveStatus(HttpStatusCode.OK);

        await using (var session = App.Host.Services.GetRequiredService<IDocumentStore>().LightweightSession())
        {
            var hash = ApiKey.Hash(token);
            var key = await session.Query<ApiKey>().SingleAsync(k => k.TokenHash == hash);
            key.RevokedAt = DateTimeOffset.UtcNow;
            session.Store(key);
            await session.SaveChangesAsync();
        }

        // The fixture keeps a found key for 1 s (ExternalData:Auth:KeyCacheSeconds); past that, the revocation holds.
        await Task.Delay(TimeSpan.FromSeconds(1.2));
        (await App.Client(token).GetAsync(Sources)).ShouldHaveStatus(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task a_read_key_can_read_but_not_write()
    {
        var reader = App.Client(await App.IssueKeyAsync("reader", [Scopes.Read], [ProjectId]));

        (await reader.GetAsync(Sources)).ShouldHaveStatus(HttpStatusCode.OK);
        (await reader.PostAsync(Sources, CreateBody())).ShouldBeProblem(HttpStatusCode.Forbidden, "API key missing required scope 'external_data_source:write'");
        (await reader.DeleteAsync(SourceUrl(Guid.NewGuid().ToString()))).ShouldHaveStatus(HttpStatusCode.Forbidden);
        (await EventCountAsync()).ShouldBe(0);
    }

    [Fact]
    public async Task write_implies_read()
    {
        var writer = App.Client(await App.IssueKeyAsync("writer", [Scopes.Write], [ProjectId]));

        var id = (await writer.PostAsync(Sources, CreateBody())).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        (await writer.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task a_key_without_a_scope_at_all_gets_403_naming_the_read_scope()
    {
        var none = App.Client(await App.IssueKeyAsync("no-scopes", [], [ProjectId]));
        (await none.GetAsync(Sources)).ShouldBeProblem(HttpStatusCode.Forbidden, "API key missing required scope 'external_data_source:read'");
    }

    [Fact]
    public async Task another_projects_source_answers_404_on_every_route()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var otherProject = (int.Parse(ProjectId, System.Globalization.CultureInfo.InvariantCulture) - 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var outsider = App.Client(await App.IssueKeyAsync("outsider", Scopes.All, [otherProject]));
        var admin = App.Client();

        foreach (var client in new[] { outsider, admin })
        {
            // The outsider's key does not cover this project; the admin's does, but under another project the id is unknown.
            var project = client == outsider ? ProjectId : otherProject;
            var url = $"/api/projects/{project}/external_data_sources/{id}/";
            (await client.GetAsync(url)).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
            (await client.GetAsync($"{url}?as_of=1")).ShouldHaveStatus(HttpStatusCode.NotFound);
            (await client.PatchAsync(url, new JsonObject { ["description"] = "hijack" })).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
            (await client.DeleteAsync(url)).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
            (await client.GetAsync($"/api/environments/{project}/external_data_sources/{id}")).ShouldHaveStatus(HttpStatusCode.NotFound);
        }

        (await outsider.GetAsync(Sources)).ShouldHaveStatus(HttpStatusCode.NotFound);
        (await outsider.PostAsync(Sources, CreateBody())).ShouldHaveStatus(HttpStatusCode.NotFound);
        (await admin.GetAsync($"/api/projects/{otherProject}/external_data_sources/")).Json["count"]!.GetValue<int>().ShouldBe(0);
        (await Api.GetAsync(SourceUrl(id))).Json["description"].ShouldBeNull();
        (await EventCountAsync(id)).ShouldBe(CreatedVersion);
    }
}
