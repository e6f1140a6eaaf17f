using System.Diagnostics;
using System.Net;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using ExternalData.EventSourced.LocalPostgres;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>
/// The README's first command on a machine with no database configured: the service creates its own PostgreSQL under
/// <c>.local/</c> in the working directory, starts it while the host is being built, and stops it on Ctrl-C. A second
/// run re-uses the folder (the cluster that ran there is not re-initialised or re-owned).
/// </summary>
public sealed class when_a_newcomer_runs_the_service_without_a_database : IAsyncLifetime
{
    private readonly string _folder = Directory.CreateTempSubdirectory("edtest-newcomer-").FullName;

    public when_a_newcomer_runs_the_service_without_a_database()
    {
        // A project folder is readable by others (a temporary one is not): the postgres OS user must reach it when root runs the service.
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(_folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                                          UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
    }

    [Fact]
    public async Task it_starts_its_embedded_postgres_answers_ready_and_stops_it_on_ctrl_c_twice_on_one_folder()
    {
        var first = await RunUntilReadyThenInterruptAsync();
        first.ShouldContain("Initialising a local PostgreSQL cluster");
        first.ShouldContain("Local PostgreSQL listening on 127.0.0.1:");
        first.ShouldContain("Local PostgreSQL stopped");

        var second = await RunUntilReadyThenInterruptAsync();
        second.ShouldNotContain("Initialising a local PostgreSQL cluster");
        second.ShouldContain("Local PostgreSQL listening on 127.0.0.1:");
        second.ShouldContain("Local PostgreSQL stopped");
        File.Exists(Path.Combine(_folder, ".local", "postgres", "data", "postmaster.pid")).ShouldBeFalse("the server stopped with the service");
    }

    private async Task<string> RunUntilReadyThenInterruptAsync()
    {
        var port = ServiceProcess.FreePort();
        var dll = typeof(Program).Assembly.Location;
        var start = new ProcessStartInfo("dotnet", [dll, "--urls", $"http://127.0.0.1:{port}"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _folder,
        };
        start.Environment.Remove("ConnectionStrings__Marten");
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Development";
        start.Environment["ExternalData__Demo__Enabled"] = "false";
        var output = new System.Text.StringBuilder();
        using var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            var ready = false;
            for (var deadline = DateTime.UtcNow.AddSeconds(90); !ready && DateTime.UtcNow < deadline;)
            {
                if (process.HasExited) throw new InvalidOperationException($"The service exited with {process.ExitCode}:\n{Text(output)}");
                try { ready = (await http.GetAsync($"http://127.0.0.1:{port}/health/ready")).StatusCode == HttpStatusCode.OK; }
                catch (HttpRequestException) { }
                catch (TaskCanceledException) { }
                if (!ready) await Task.Delay(200);
            }

            ready.ShouldBeTrue($"ready within 90 s:\n{Text(output)}");
            // Ctrl-C: the host stops, then the embedded PostgreSQL.
            using (var interrupt = Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await interrupt.WaitForExitAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await process.WaitForExitAsync(timeout.Token);
            process.ExitCode.ShouldBe(0, Text(output));
            return Text(output);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    private static string Text(System.Text.StringBuilder output)
    {
        lock (output) return output.ToString();
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        // A run that failed may have left its server up: attach to it and stop it before the folder goes.
        var root = Path.Combine(_folder, ".local", "postgres");
        if (File.Exists(Path.Combine(root, "data", "postmaster.pid")))
            await (await LocalPostgresCluster.StartAsync(root, persistent: true)).StopAsync(evenIfAttached: true);

        try { Directory.Delete(_folder, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
