using System.Net;
using System.Text.Json.Nodes;
using Alba;
using ExternalData.EventSourced.Credentials;
using ExternalData.EventSourced.Credentials.Expiring;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.Infrastructure.Encryption;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using Shouldly;
using Wolverine;

namespace ExternalData.EventSourced.IntegrationTests.Credentials;

/// <summary>Expiry is an event, fired by a durable scheduled message at expires_at: the stash leaves the list, can no
/// longer be used, and its data key is destroyed. A restart in between does not lose it.</summary>
public sealed class when_a_stash_expires(AppFixture app) : IntegrationContext(app)
{
    private async Task<IReadOnlyList<object>> StashEventsAsync(IAlbaHost host, Guid id)
    {
        await using var session = host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId);
        return (await session.Events.FetchStreamAsync(id)).Select(e => e.Data).ToList();
    }

    private async Task<(string Status, DateTimeOffset At)?> ScheduledExpiryAsync(Guid id)
    {
        await using var connection = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            $"SELECT status, execution_time FROM {App.Schema}.wolverine_incoming_envelopes WHERE message_type LIKE '%ExpireCredentials%' AND position(@id::bytea in body) > 0",
            connection);
        // The envelope body is Wolverine's binary format with the message's JSON inside it.
        command.Parameters.AddWithValue("id", System.Text.Encoding.UTF8.GetBytes(id.ToString()));
        await using var reader = await command.ExecuteReaderAsync();
        return await reader.ReadAsync() ? (reader.GetString(0), new DateTimeOffset(reader.GetDateTime(1), TimeSpan.Zero)) : null;
    }

    [Fact]
    public async Task moving_the_clock_past_expires_at_expires_it_and_shreds_its_key()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var host = await App.StartHostAsync(allowPrivateHosts: true, services => services.AddSingleton<TimeProvider>(clock));
        var api = new ApiClient(host.Server.CreateClient(), App.AdminKey);
        var canary = $"canary-{Guid.NewGuid():N}";
        var stored = (await api.PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = await CanaryConfigAsync(canary) }))
            .ShouldHaveStatus(HttpStatusCode.Created).Json;
        var id = Guid.Parse(stored["credential_id"]!.GetValue<string>());
        var expiresAt = clock.GetUtcNow().AddHours(24);

        // The expiry is in the durable inbox, scheduled for expires_at, committed with the stash.
        var scheduled = (await ScheduledExpiryAsync(id)).ShouldNotBeNull();
        scheduled.Status.ShouldBe("Scheduled");
        (scheduled.At - expiresAt).Duration().ShouldBeLessThan(TimeSpan.FromSeconds(1));

        // Delivered early (another node's clock runs ahead): nothing expires, it waits again.
        var bus = host.Services.GetRequiredService<IMessageBus>();
        await bus.InvokeForTenantAsync(ProjectId, new ExpireCredentials(id, expiresAt));
        (await StashEventsAsync(host, id)).Count.ShouldBe(1);
        (await api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().Count.ShouldBe(1);

        clock.Advance(TimeSpan.FromHours(24) + TimeSpan.FromSeconds(1));
        // Past expires_at the stash is unusable at once, even before its message runs.
        (await api.GetAsync($"{Sources}stored_credentials/")).Json.AsArray().ShouldBeEmpty();
        (await api.PostAsync($"{Sources}setup/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = new JsonObject { ["credential_id"] = id.ToString() } }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, $"Stored credential '{id}' not found or expired");

        // The scheduled message, as the durability agent delivers it when its time comes.
        await bus.InvokeForTenantAsync(ProjectId, new ExpireCredentials(id, expiresAt));
        var events = await StashEventsAsync(host, id);
        events.Select(e => e.GetType().Name).ShouldBe(["CredentialsStashed", "CredentialsExpired"]);
        await using (var session = host.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId))
        {
            (await session.LoadAsync<DataKey>(id)).ShouldBeNull("expiry shreds the stash's key");
            (await session.LoadAsync<StoredCredentialSummary>(id)).ShouldBeNull();
        }

        await AssertNowhereStoredAsync(canary);
    }

    [Fact]
    public async Task a_stash_outlives_the_process_that_stored_it_and_still_expires_on_time()
    {
        var settings = new Dictionary<string, string> { ["ExternalData:Credentials:TimeToLive"] = "00:00:02" };
        Guid id;
        await using (var first = await App.StartHostAsync(allowPrivateHosts: true, settings: settings))
        {
            var stored = (await new ApiClient(first.Server.CreateClient(), App.AdminKey)
                    .PostAsync($"{Sources}store_credentials/", new JsonObject { ["source_type"] = "Postgres", ["payload"] = PostgresConfig() }))
                .ShouldHaveStatus(HttpStatusCode.Created).Json;
            id = Guid.Parse(stored["credential_id"]!.GetValue<string>());
        }

        // The process that stored it is gone before expires_at; a node started afterwards fires the durable message.
        await using var second = await App.StartHostAsync(allowPrivateHosts: true, settings: settings);
        var deadline = DateTimeOffset.UtcNow.AddSeconds(60);
        IReadOnlyList<object> events;
        do
        {
            await Task.Delay(250);
            events = await StashEventsAsync(second, id);
        } while (events.Count < 2 && DateTimeOffset.UtcNow < deadline);

        events.Select(e => e.GetType().Name).ShouldBe(["CredentialsStashed", "CredentialsExpired"]);
        var expired = (CredentialsExpired)events[1];
        var stashed = (CredentialsStashed)events[0];
        expired.ExpiredAt.ShouldBeGreaterThanOrEqualTo(stashed.ExpiresAt);
        // The service expired it on its own: the system caller, in the event body and its metadata alike.
        expired.ExpiredBy!.Name.ShouldBe("system:credential-expiry");
        expired.ExpiredVia.ShouldBe("system");
        await using (var session = second.Services.GetRequiredService<IDocumentStore>().QuerySession(ProjectId))
        {
            var recorded = (await session.Events.FetchStreamAsync(id))[1];
            recorded.Headers!["actor_name"].ToString().ShouldBe("system:credential-expiry");
            recorded.Headers!["created_via"].ToString().ShouldBe("system");
            recorded.Headers!.ShouldNotContainKey("actor_id", "the service has no API key");
        }
        (await ScheduledExpiryAsync(id)).ShouldNotBeNull().Status.ShouldBe("Handled", "delivered once; Wolverine keeps the envelope a while to refuse a duplicate");
    }
}
