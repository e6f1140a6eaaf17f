using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Credentials;

/// <summary>store_credentials runs the create gate and stashes the checked config sealed, single use, for 24 h;
/// stored_credentials lists the usable stashes, metadata only (ref §5.17, §5.18, §8).</summary>
public sealed class when_stashing_credentials_for_an_agent(AppFixture app) : IntegrationContext(app)
{
    private string StoreUrl => $"{Sources}store_credentials/";
    private string ListUrl => $"{Sources}stored_credentials/";

    private JsonObject Stash(JsonObject? config = null, string sourceType = "Postgres") =>
        new() { ["source_type"] = sourceType, ["payload"] = config ?? PostgresConfig() };

    [Fact]
    public async Task a_checked_config_is_stashed_sealed_and_listed_newest_first()
    {
        var padded = PostgresConfig();
        padded["host"] = $"  {padded["host"]!.GetValue<string>()}  ";
        var first = (await Api.PostAsync(StoreUrl, Stash(padded))).ShouldHaveStatus(HttpStatusCode.Created).Json;
        var second = (await Api.PostAsync(StoreUrl, Stash())).ShouldHaveStatus(HttpStatusCode.Created).Json;

        first.AsObject().Select(kv => kv.Key).Order().ShouldBe(["created_at", "credential_id", "expires_at", "source_type"]);
        first["source_type"]!.GetValue<string>().ShouldBe("Postgres");
        (DateTimeOffset.Parse(first["expires_at"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture)
         - DateTimeOffset.Parse(first["created_at"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture)).ShouldBe(TimeSpan.FromHours(24));

        var listed = (await Api.GetAsync(ListUrl)).ShouldHaveStatus(HttpStatusCode.OK).Json.AsArray();
        listed.Select(s => s!["credential_id"]!.GetValue<string>()).ShouldBe([second["credential_id"]!.GetValue<string>(), first["credential_id"]!.GetValue<string>()]);
        listed[0]!.AsObject().Select(kv => kv.Key).Order().ShouldBe(["created_at", "created_by", "credential_id", "expires_at", "id", "source_type"]);
        listed[0]!["created_by"]!.GetValue<string>().ShouldBe("test-admin");
        (await Api.GetAsync($"{ListUrl}?source_type=Stripe")).Json.AsArray().ShouldBeEmpty();
        (await Api.GetAsync($"{ListUrl}?source_type=postgres")).Json.AsArray().ShouldBeEmpty("the type filter is exact");
        (await Api.GetAsync($"{ListUrl}?search=post")).Json.AsArray().Count.ShouldBe(2);

        // The config inside is sealed, trimmed, and carries the stash's own data key.
        var id = Guid.Parse(first["credential_id"]!.GetValue<string>());
        await using var session = App.Host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId);
        var stashed = (await session.Events.FetchStreamAsync(id)).ShouldHaveSingleItem().Data.ShouldBeOfType<CredentialsStashed>();
        stashed.Payload.Ciphertext.ShouldNotContain(App.Source.ReaderPassword);
        stashed.StashedVia.ShouldBe("api");
        var cipher = App.Host.Services.GetRequiredService<ExternalData.EventSourced.Infrastructure.Encryption.SecretsCipher>();
        var key = (await session.LoadAsync<ExternalData.EventSourced.Infrastructure.Encryption.DataKey>(id)).ShouldNotBeNull();
        cipher.Unseal(stashed.Payload, cipher.Unwrap(key), id)["host"]!.GetValue<string>().ShouldBe(App.Source.Host);
    }

    [Fact]
    public async Task a_bad_request_config_or_password_is_refused_in_posthogs_words_and_nothing_is_stored()
    {
        (await Api.PostAsync(StoreUrl, new JsonObject { ["payload"] = PostgresConfig() })).ShouldBeProblem(HttpStatusCode.BadRequest, "This field is required.", "source_type");
        (await Api.PostAsync(StoreUrl, new JsonObject { ["source_type"] = "Postgres" })).ShouldBeProblem(HttpStatusCode.BadRequest, "This field is required.", "payload");
        (await Api.PostAsync(StoreUrl, Stash(sourceType: "Oracle"))).ShouldBeProblem(HttpStatusCode.BadRequest, "\"Oracle\" is not a valid choice.", "source_type");
        var badPort = PostgresConfig();
        badPort["port"] = "not-a-port";
        (await Api.PostAsync(StoreUrl, Stash(badPort))).ShouldBeProblem(HttpStatusCode.BadRequest, "Invalid source config: Field 'port' has an invalid value", "payload.port");
        var response = await Api.PostAsync(StoreUrl, Stash(PostgresConfig(password: "wrong")));
        response.ShouldHaveStatus(HttpStatusCode.BadRequest);
        response.Json["detail"]!.GetValue<string>().ShouldContain("password");

        (await EventCountAsync()).ShouldBe(0);
        (await Api.GetAsync(ListUrl)).Json.AsArray().ShouldBeEmpty();
    }
}
