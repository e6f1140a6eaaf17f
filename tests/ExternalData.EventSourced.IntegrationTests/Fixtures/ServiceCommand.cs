using System.Diagnostics;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

public static class ServiceCommand
{
    /// <summary>Runs the built service binary as an operator would, against the suite's database.</summary>
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(AppFixture app, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "ExternalData.EventSourced.Api.dll");
        var start = new ProcessStartInfo("dotnet", [dll, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Testing";
        start.Environment["DOTNET_ENVIRONMENT"] = "Testing";
        start.Environment["ConnectionStrings__Marten"] = app.Server.ServiceConnectionString;
        start.Environment["ExternalData__Database__Schema"] = app.Schema;
        start.Environment[$"ExternalData__Encryption__MasterKeys__{AppFixture.MasterKeyId}"] = AppFixture.MasterKey;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}
