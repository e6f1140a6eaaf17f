using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

public sealed class when_deleting_a_source(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task answers_204_then_404_and_keeps_the_history()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "before delete" })).ShouldHaveStatus(HttpStatusCode.OK);

        var deleted = await Api.DeleteAsync(SourceUrl(id));

        deleted.ShouldHaveStatus(HttpStatusCode.NoContent);
        deleted.Text.ShouldBeEmpty();
        (await Api.GetAsync(SourceUrl(id))).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await Api.GetAsync(Sources)).Json["count"]!.GetValue<int>().ShouldBe(0);
        (await Api.DeleteAsync(SourceUrl(id))).ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "x" })).ShouldHaveStatus(HttpStatusCode.NotFound);
        (await EventCountAsync(id)).ShouldBe(CreatedVersion + 2);
        // An auditor can still see what it was.
        (await Api.GetAsync($"{SourceUrl(id)}?as_of={CreatedVersion + 1}")).ShouldHaveStatus(HttpStatusCode.OK).Json["description"]!.GetValue<string>().ShouldBe("before delete");
    }

    [Fact]
    public async Task its_secrets_can_never_be_decrypted_again()
    {
        var id = Guid.Parse((await CreateSourceAsync())["id"]!.GetValue<string>());
        var store = App.Host.Services.GetRequiredService<IDocumentStore>();
        await using (var session = store.QuerySession(ProjectId))
        {
            (await session.LoadAsync<DataKey>(id)).ShouldNotBeNull();
        }

        (await Api.DeleteAsync(SourceUrl(id.ToString()))).ShouldHaveStatus(HttpStatusCode.NoContent);

        await using var after = store.QuerySession(ProjectId);
        (await after.LoadAsync<DataKey>(id)).ShouldBeNull();
        var created = (await after.Events.FetchStreamAsync(id)).Select(e => e.Data).OfType<ExternalData.EventSourced.Sources.SourceCreated>().Single();
        created.Secrets.ShouldNotBeNull();
        // Without the data key, the sealed secrets in the event are noise; even a guessed key fails authentication.
        var cipher = App.Host.Services.GetRequiredService<SecretsCipher>();
        Should.Throw<System.Security.Cryptography.AuthenticationTagMismatchException>(() =>
            cipher.Unseal(created.Secrets!, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), id));
    }
}
