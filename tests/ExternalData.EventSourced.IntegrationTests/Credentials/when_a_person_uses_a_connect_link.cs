using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.Credentials.ConnectLinks;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Shared;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using ExternalData.EventSourced.Infrastructure.Messaging;

namespace ExternalData.EventSourced.IntegrationTests.Credentials;

/// <summary>The agent-safe flow over HTTP: a signed, single-use, expiring link to a page that runs store_credentials
/// with channel <c>web</c> for the link's project only (API.md §5). The browser test drives the same page in Chromium.</summary>
public sealed class when_a_person_uses_a_connect_link(AppFixture app) : IntegrationContext(app)
{
    private async Task<JsonNode> LinkAsync(ApiClient? client = null, string project = "") =>
        (await (client ?? Api).GetAsync($"/api/projects/{(project.Length > 0 ? project : ProjectId)}/external_data_sources/connect_link/?source_type=Postgres"))
        .ShouldHaveStatus(HttpStatusCode.OK).Json;

    private static string PathOf(JsonNode link) => new Uri(link["connect_url"]!.GetValue<string>()).AbsolutePath;

    [Fact]
    public async Task the_link_names_its_page_and_tells_the_agent_what_to_do()
    {
        var link = await LinkAsync();
        link.AsObject().Select(kv => kv.Key).Order().ShouldBe(["auth_method", "connect_url", "expires_at", "instructions", "source_type"]);
        link["auth_method"]!.GetValue<string>().ShouldBe("credentials");
        link["connect_url"]!.GetValue<string>().ShouldStartWith("http://localhost/connect/");
        var instructions = link["instructions"]!.GetValue<string>();
        instructions.ShouldContain("Never ask for passwords");
        instructions.ShouldContain("stored_credentials");
        instructions.ShouldContain("credential_id");
        (DateTimeOffset.Parse(link["expires_at"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture) - DateTimeOffset.UtcNow)
            .ShouldBeInRange(TimeSpan.FromMinutes(59), TimeSpan.FromMinutes(61));

        (await Api.GetAsync($"{Sources}connect_link/")).ShouldBeProblem(HttpStatusCode.BadRequest, "Missing required parameter: source_type", "source_type");
        (await Api.GetAsync($"{Sources}connect_link/?source_type=Oracle")).ShouldBeProblem(HttpStatusCode.BadRequest, "Unknown source_type 'Oracle'", "source_type");
    }

    [Fact]
    public async Task the_page_is_served_without_a_key_under_a_strict_policy_and_stashes_once_into_its_own_project()
    {
        var link = await LinkAsync();
        var anonymous = App.Anonymous();
        using var http = App.Host.Server.CreateClient();
        using var page = await http.GetAsync(PathOf(link));
        page.StatusCode.ShouldBe(HttpStatusCode.OK);
        page.Content.Headers.ContentType!.MediaType.ShouldBe("text/html");
        page.Headers.GetValues("Content-Security-Policy").Single().ShouldStartWith("default-src 'none'; script-src 'self'");
        var html = await page.Content.ReadAsStringAsync();
        html.ShouldContain("<label for=\"f-password\">");
        html.ShouldNotContain("http", Case.Sensitive, "no external asset is referenced");

        var stored = (await anonymous.PostAsync($"{PathOf(link)}/credentials", new JsonObject { ["payload"] = PostgresConfig() }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json;
        var id = stored["credential_id"]!.GetValue<string>();
        (await Api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().Select(s => s!["credential_id"]!.GetValue<string>()).ShouldBe([id]);

        // The stash says who issued the link and that it came through the web page, in the body and the metadata.
        await using (var session = App.Host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId))
        {
            var stashed = (await session.Events.FetchStreamAsync(Guid.Parse(id))).Single();
            stashed.Data.ShouldBeOfType<CredentialsStashed>().StashedVia.ShouldBe(Channel.Web);
            ((CredentialsStashed)stashed.Data).StashedBy.Name.ShouldBe("test-admin");
            stashed.Headers![CallerMetadata.CreatedViaHeader]!.ToString().ShouldBe(Channel.Web);
        }

        // Used: the page and its post answer 410; nothing more is stored.
        using var again = await http.GetAsync(PathOf(link));
        again.StatusCode.ShouldBe(HttpStatusCode.Gone);
        (await again.Content.ReadAsStringAsync()).ShouldContain("can no longer be used");
        (await anonymous.PostAsync($"{PathOf(link)}/credentials", new JsonObject { ["payload"] = PostgresConfig() })).Status.ShouldBe(HttpStatusCode.Gone);
        (await Api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().Count.ShouldBe(1);
    }

    [Fact]
    public async Task the_form_follows_the_source_types_fields_selects_and_nested_secrets_included()
    {
        var link = (await Api.GetAsync($"{Sources}connect_link/?source_type=Stripe")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        using var http = App.Host.Server.CreateClient();
        var html = await (await http.GetAsync(PathOf(link))).Content.ReadAsStringAsync();

        html.ShouldContain("<select id=\"f-auth_method\" name=\"auth_method.selection\" data-select=\"auth_method\" required aria-required=\"true\">");
        html.ShouldContain("<fieldset data-option-of=\"auth_method\" data-option=\"api_key\">");
        html.ShouldContain("name=\"auth_method.stripe_secret_key\" type=\"password\"");
        html.ShouldContain("<label for=\"f-stripe_account_id\">");
    }

    [Fact]
    public async Task a_refused_config_keeps_the_link_usable_and_never_echoes_the_secret()
    {
        var link = await LinkAsync();
        var wrong = PostgresConfig(password: "not-the-password-7f3a");
        var refused = await App.Anonymous().PostAsync($"{PathOf(link)}/credentials", new JsonObject { ["payload"] = wrong });
        refused.ShouldHaveStatus(HttpStatusCode.BadRequest);
        refused.Text.ShouldNotContain("not-the-password-7f3a");

        (await App.Anonymous().PostAsync($"{PathOf(link)}/credentials", new JsonObject { ["payload"] = PostgresConfig() })).ShouldHaveStatus(HttpStatusCode.Created);
    }

    [Fact]
    public async Task a_malformed_or_altered_token_is_404_and_a_token_cannot_reach_another_project()
    {
        using var http = App.Host.Server.CreateClient();
        (await http.GetAsync("/connect/not-a-token")).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        var path = PathOf(await LinkAsync());
        var altered = path[..^3] + (path[^3] == 'A' ? 'B' : 'A') + path[^2..];
        (await http.GetAsync(altered)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        (await App.Anonymous().PostAsync($"{altered}/credentials", new JsonObject { ["payload"] = PostgresConfig() })).ShouldBeProblem(HttpStatusCode.NotFound, "This link is not valid.");

        // The token names its project: stashing through it lands there, never in the project of whoever posts.
        var otherProject = Random.Shared.Next(100_000, int.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var otherLink = await LinkAsync(project: otherProject);
        (await App.Anonymous().PostAsync($"{PathOf(otherLink)}/credentials", new JsonObject { ["payload"] = PostgresConfig() })).ShouldHaveStatus(HttpStatusCode.Created);
        (await Api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().ShouldBeEmpty();
        (await Api.GetAsync($"/api/projects/{otherProject}/external_data_sources/stored_credentials/")).Json.AsArray().Count.ShouldBe(1);
    }

    [Fact]
    public async Task an_expired_link_answers_410()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await App.StartHostAsync(allowPrivateHosts: true, services => services.AddSingleton<TimeProvider>(clock));
        var link = await LinkAsync(new ApiClient(host.Server.CreateClient(), App.AdminKey));
        using var http = host.Server.CreateClient();
        (await http.GetAsync(PathOf(link))).StatusCode.ShouldBe(HttpStatusCode.OK);

        clock.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));
        (await http.GetAsync(PathOf(link))).StatusCode.ShouldBe(HttpStatusCode.Gone);
        var post = await new ApiClient(host.Server.CreateClient(), apiKey: null).PostAsync($"{PathOf(link)}/credentials", new JsonObject { ["payload"] = PostgresConfig() });
        post.ShouldBeProblem(HttpStatusCode.Gone, "This link has already been used or has expired. Ask for a new one.");
    }
}
