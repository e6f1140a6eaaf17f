using System.Diagnostics;
using System.Text.RegularExpressions;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>
/// The README's "Try it" and agent-safe walk-through, run as they are written: the bash blocks are read from
/// README.md itself (not copied here), against the service as a real process with its demo source database. Only
/// what differs on a test machine is substituted: the address, the key, the project and the server's port.
/// </summary>
public sealed partial class when_a_newcomer_follows_the_readme(AppFixture app) : IntegrationContext(app)
{
    private static string ReadmePath()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "README.md")) && File.Exists(Path.Combine(dir.FullName, "ExternalData.EventSourced.sln")))
                return Path.Combine(dir.FullName, "README.md");
        throw new FileNotFoundException("README.md of the repository");
    }

    /// <summary>The bash blocks of a README section, in order.</summary>
    private static IEnumerable<string> BashBlocks(string readme, string heading)
    {
        var start = readme.IndexOf($"## {heading}", StringComparison.Ordinal);
        start.ShouldBeGreaterThanOrEqualTo(0, $"README has a '{heading}' section");
        var end = readme.IndexOf("\n## ", start + 3, StringComparison.Ordinal);
        var section = end < 0 ? readme[start..] : readme[start..end];
        return Block().Matches(section).Select(m => m.Groups[1].Value);
    }

    [GeneratedRegex("```bash\\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex Block();

    [Fact]
    public async Task its_try_it_and_agent_walk_through_work_copy_paste_on_the_demo_source()
    {
        await using var service = await ServiceProcess.StartAsync(App, new Dictionary<string, string> { ["ExternalData__Demo__Enabled"] = "true" });
        var key = await App.IssueKeyAsync("readme", Scopes.All, [ProjectId]);
        var readme = await File.ReadAllTextAsync(ReadmePath());
        var script = string.Join("\n", BashBlocks(readme, "Try it").Concat(BashBlocks(readme, "Secrets never pass through an agent")));
        script.ShouldContain("KEY=edk_...");
        script = script
            .Replace("KEY=edk_...", $"KEY={key}")
            .Replace("http://localhost:5080", service.BaseUrl)
            .Replace("/api/projects/1/", $"/api/projects/{ProjectId}/")
            .Replace("\"port\": 54329", $"\"port\": {App.Server.Port}")
            .Replace("warehouse_1.", $"warehouse_{ProjectId}.");
        // The warehouse is the service's own database: the suite's server, not the embedded one a newcomer has.
        script = System.Text.RegularExpressions.Regex.Replace(script, "^WAREHOUSE=.*$", $"WAREHOUSE='{App.Server.UriFor("postgres")}'", RegexOptions.Multiline);
        script = System.Text.RegularExpressions.Regex.Replace(script, "^DEMO_ADMIN=.*$", $"DEMO_ADMIN='{App.Server.UriFor("demo_shop")}'", RegexOptions.Multiline);

        var start = new ProcessStartInfo("bash", ["-euo", "pipefail", "-c", script]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var bash = Process.Start(start)!;
        var stdout = bash.StandardOutput.ReadToEndAsync();
        var stderr = bash.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await bash.WaitForExitAsync(timeout.Token);
        var output = await stdout;
        bash.ExitCode.ShouldBe(0, $"{output}\n{await stderr}");

        output.ShouldContain("\"table\":\"orders\",\"incremental_field\":\"updated_at\"");
        output.ShouldContain("\"table\":\"payroll\"");
        output.ShouldContain("does not have SELECT permission on table 'public.payroll'");
        output.ShouldContain("{\"name\":\"page_views\",\"should_sync\":true,\"sync_type\":\"full_refresh\"}");
        output.ShouldContain("schemas_bulk_updated via api: 1 table enabled for full refresh sync");
        output.ShouldContain("\"credential_id\":");
        output.ShouldMatch("\"enabled\":\\[[^\\]]*\"orders\"");
        output.ShouldContain("{\"table\":\"orders\",\"trigger\":\"create\",\"mode\":\"full\",\"status\":\"Completed\",\"rows_synced\":");
        output.ShouldContain("{\"table\":\"orders\",\"trigger\":\"manual\",\"mode\":\"incremental\",\"status\":\"Completed\",\"rows_synced\":");
        output.ShouldMatch(@"\n\s+1 \| refunded\n");
        output.ShouldMatch(@"orders \| +max\s*\n-+\+-+\n\s+\d+ \|");
    }
}
