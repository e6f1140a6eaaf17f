using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Security;

/// <summary>
/// The canary: a source whose password is a unique marker goes through every endpoint, happy and sad paths.
/// The marker must then appear in no response, no log line, and no row of the event or document tables.
/// </summary>
public sealed class when_a_secret_is_submitted(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task it_appears_in_no_response_log_line_event_or_document()
    {
        var canary = $"canary-{Guid.NewGuid():N}";
        var config = await CanaryConfigAsync(canary);
        var responses = new List<ApiResponse>();
        async Task<ApiResponse> Track(Func<Task<ApiResponse>> call)
        {
            var response = await call();
            responses.Add(response);
            return response;
        }

        var created = await Track(() => Api.PostAsync(Sources, CreateBody(prefix: "canary", config: (JsonObject)config.DeepClone())));
        var id = created.ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await Track(() => Api.GetAsync(Sources));
        await Track(() => Api.GetAsync(SourceUrl(id)));
        await Track(() => Api.GetAsync($"{SourceUrl(id)}?as_of=1"));
        await Track(() => Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["schema"] = "public" } }));
        await Track(() => Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["password"] = canary } }));
        // Sad paths that carry the secret: a failed login, a bad config, a prefix clash, malformed JSON around it.
        await Track(() => Api.PostAsync(Sources, CreateBody(prefix: "canary", config: (JsonObject)config.DeepClone())));
        var wrongUser = (JsonObject)config.DeepClone();
        wrongUser["user"] = "nobody_here";
        await Track(() => Api.PostAsync(Sources, CreateBody(prefix: "other", config: wrongUser)));
        var badPort = (JsonObject)config.DeepClone();
        badPort["port"] = canary;
        await Track(() => Api.PostAsync(Sources, CreateBody(prefix: "third", config: badPort)));
        await Track(() => Api.PostAsync(Sources, $"{{\"source_type\":\"Postgres\",\"payload\":{{\"password\":\"{canary}\",")); 
        await Track(() => Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["host"] = "localhost", ["password"] = canary + "x" } }));
        await Track(() => Api.DeleteAsync(SourceUrl(id)));

        // A failed invocation is logged with its command: racing creates lose on the prefix index, in the logs too.
        var racers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Track(() => Api.PostAsync(Sources, CreateBody(prefix: "raced_canary", config: (JsonObject)config.DeepClone())))));
        racers.Count(r => r.Status == HttpStatusCode.Created).ShouldBe(1);

        // Stashed for an agent: stored, listed, a bad stash, consumed by a setup, then a reuse refused.
        var stash = await Track(() => Api.PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = config.DeepClone() }));
        var credentialId = stash.ShouldHaveStatus(HttpStatusCode.Created).Json["credential_id"]!.GetValue<string>();
        await Track(() => Api.PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = wrongUser.DeepClone() }));
        await Track(() => Api.GetAsync($"{Sources}stored_credentials/"));
        var setUp = await Track(() => Api.PostAsync($"{Sources}setup/", new JsonObject
        {
            ["source_type"] = "Postgres", ["prefix"] = "stashed", ["payload"] = new JsonObject { ["credential_id"] = credentialId },
        }));
        setUp.ShouldHaveStatus(HttpStatusCode.Created);
        await Track(() => Api.PostAsync($"{Sources}setup/", new JsonObject
        {
            ["source_type"] = "Postgres", ["prefix"] = "again", ["payload"] = new JsonObject { ["credential_id"] = credentialId },
        }));

        // The same for a Stripe key: create, preview, read, a wrong-key attempt, delete.
        var stripeKey = $"rk_test_{canary}";
        App.Stripe.RegisterKey(stripeKey, "/v1/charges");
        var stripeAuth = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = stripeKey };
        var stripeSource = await Track(() => Api.PostAsync(Sources, new JsonObject
        {
            ["source_type"] = "Stripe",
            ["payload"] = new JsonObject
            {
                ["auth_method"] = stripeAuth.DeepClone(),
                ["schemas"] = new JsonArray(new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
            },
        }));
        var stripeId = stripeSource.ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
        await Track(() => Api.PostAsync($"{Sources}database_schema/", new JsonObject { ["source_type"] = "Stripe", ["auth_method"] = stripeAuth.DeepClone() }));
        await Track(() => Api.PostAsync($"{Sources}database_schema/", new JsonObject { ["source_type"] = "Stripe", ["stripe_secret_key"] = stripeKey + "-unknown" }));
        await Track(() => Api.GetAsync(SourceUrl(stripeId)));
        await Track(() => Api.PatchAsync(SourceUrl(stripeId), new JsonObject { ["job_inputs"] = new JsonObject { ["auth_method"] = stripeAuth.DeepClone() } }));
        await Track(() => Api.DeleteAsync(SourceUrl(stripeId)));

        responses.ShouldAllBe(r => !r.Text.Contains(canary, StringComparison.Ordinal));
        App.Logs.Lines.Where(l => l.Contains(canary, StringComparison.Ordinal)).ShouldBeEmpty();

        await AssertNowhereStoredAsync(canary);
    }
}
