using System.Net;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

public sealed class when_operating_the_service(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task health_endpoints_answer_without_a_key()
    {
        var client = App.Anonymous();
        (await client.GetAsync("/health/live")).ShouldHaveStatus(HttpStatusCode.OK).Text.ShouldBe("Healthy");
        var ready = await client.GetAsync("/health/ready");
        ready.ShouldHaveStatus(HttpStatusCode.OK);
        ready.Json["status"]!.GetValue<string>().ShouldBe("Healthy");
        ready.Json["checks"]!["database"]!["status"]!.GetValue<string>().ShouldBe("Healthy");
        ready.Json["checks"]!["syncs"]!["data"]!["overdue_schedules"]!.GetValue<int>().ShouldBe(0);
        ready.Json["checks"]!["syncs"]!["data"]!["failing_schemas"].ShouldNotBeNull();
    }

    /// <summary>An operator lists and rebuilds projections from the service binary, against the database a running
    /// service (the suite's host) uses at the same time; the rebuilt read model answers as before.</summary>
    [Fact]
    public async Task the_projections_command_lists_and_rebuilds_beside_a_running_service()
    {
        var id = (await CreateSourceAsync(prefix: "rebuilt"))["id"]!.GetValue<string>();
        await Api.PatchAsync(SourceUrl(id), new System.Text.Json.Nodes.JsonObject { ["description"] = "before the rebuild" });
        await RunsSettledAsync(id);
        var before = (await Api.GetAsync(SourceUrl(id))).Json.ToJsonString();

        var (listExit, listed, listErr) = await RunServiceCommandAsync("projections", "list");
        listExit.ShouldBe(0, listErr);
        foreach (var name in new[] { "Source", "SourceSchema", "AuditLog" }) listed.ShouldContain(name);

        var (exitCode, stdout, stderr) = await RunServiceCommandAsync("projections", "rebuild", "-p", "Source");
        exitCode.ShouldBe(0, stderr);
        stdout.ShouldContain("Finished rebuilding Source");
        stdout.ShouldContain("%");
        (await Api.GetAsync(SourceUrl(id))).Json.ToJsonString().ShouldBe(before);

        // Our own command shows events/s as well, for one projection or all of them.
        var (allExit, all, allErr) = await RunServiceCommandAsync("rebuild-projections");
        allExit.ShouldBe(0, allErr);
        foreach (var name in new[] { "Source", "SourceSchema", "CredentialStash", "StoredCredentialSummary", "ConnectLink", "AuditLog" })
            all.ShouldMatch($"(?m)^{name}: 100% \\([0-9,]+ of [0-9,]+ events, [0-9,]+ events/s\\), done in");
        (await Api.GetAsync(SourceUrl(id))).Json.ToJsonString().ShouldBe(before);
    }

    [Fact]
    public async Task the_api_keys_command_prints_a_working_key_alone_on_its_last_line()
    {
        var (exitCode, stdout, stderr) = await RunServiceCommandAsync(
            "api-keys", "create", "--name", "ci-bot", "--scopes", "external_data_source:read,external_data_source:write", "--projects", $"{ProjectId},7");

        exitCode.ShouldBe(0, stderr);
        var token = stdout.TrimEnd().Split('\n').Last().Trim();
        token.ShouldStartWith("edk_");
        var client = App.Client(token);
        (await client.GetAsync(Sources)).ShouldHaveStatus(HttpStatusCode.OK);
        (await client.GetAsync("/api/projects/8/external_data_sources/")).ShouldHaveStatus(HttpStatusCode.NotFound);

        var (listExit, listed, _) = await RunServiceCommandAsync("api-keys", "list");
        listExit.ShouldBe(0);
        var keyId = listed.Split('\n').Single(l => l.Contains("ci-bot", StringComparison.Ordinal)).Split(' ')[0];
        var (revokeExit, _, revokeErr) = await RunServiceCommandAsync("api-keys", "revoke", "--id", keyId);
        revokeExit.ShouldBe(0, revokeErr);
        (await client.GetAsync(Sources)).ShouldHaveStatus(HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task the_api_keys_command_refuses_an_unknown_scope()
    {
        var (exitCode, stdout, stderr) = await RunServiceCommandAsync("api-keys", "create", "--name", "x", "--scopes", "admin", "--projects", "all");
        exitCode.ShouldNotBe(0);
        stdout.ShouldNotContain("edk_");
        stderr.ShouldContain("Unknown scope(s): admin");
    }

    private Task<(int ExitCode, string Stdout, string Stderr)> RunServiceCommandAsync(params string[] args) => ServiceCommand.RunAsync(App, args);
}
