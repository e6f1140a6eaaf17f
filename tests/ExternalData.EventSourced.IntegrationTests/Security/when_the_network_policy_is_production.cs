using System.Net;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Security;

/// <summary>With <c>AllowPrivateHosts=false</c> (the production default) an internal database is refused before
/// any connection is made.</summary>
public sealed class when_the_network_policy_is_production(AppFixture app) : IntegrationContext(app), IAsyncLifetime
{
    private Alba.IAlbaHost _production = null!;

    public async Task InitializeAsync() => _production = await App.StartHostAsync(allowPrivateHosts: false);
    public async Task DisposeAsync() => await _production.DisposeAsync();

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("localhost")]
    [InlineData("169.254.169.254")]
    [InlineData("10.1.2.3")]
    [InlineData("::ffff:127.0.0.1")]
    public async Task internal_hosts_are_refused(string host)
    {
        var client = new ApiClient(_production.Server.CreateClient(), App.AdminKey);
        var config = PostgresConfig();
        config["host"] = host;

        (await client.PostAsync(Sources, CreateBody(config: config))).ShouldBeProblem(HttpStatusCode.BadRequest,
            "This host points to an internal or private IP address, which PostHog can't reach. Use a host that's reachable from the public internet. " +
            "If your database isn't publicly reachable, connect through an SSH tunnel.");
        (await EventCountAsync()).ShouldBe(0);
    }
}
