using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using ExternalData.EventSourced.LocalPostgres;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// The service as an operator starts it (<c>dotnet ExternalData.EventSourced.Api.dll</c>, Production): time from
/// process start to the first 200 of a write endpoint, and the process's resident memory then, with handler code
/// compiled at runtime (Dynamic, the baseline) and with the code generated ahead of time (Static).
/// </summary>
internal static class ColdStartBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, bool quick)
    {
        var runs = quick ? 2 : 5;
        var dll = ApiDll();
        var masterKey = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production", ["DOTNET_ENVIRONMENT"] = "Production",
            ["ConnectionStrings__Marten"] = cluster.ConnectionString, ["ExternalData__Database__Schema"] = "bench_cold_start",
            ["ExternalData__Encryption__MasterKeys__bench"] = masterKey, ["ExternalData__Encryption__ActiveMasterKeyId"] = "bench",
        };

        // The key an operator would create; this also applies the database schema once, outside the measured starts.
        var (exit, output) = await RunToEndAsync(dll, environment,
            ["api-keys", "create", "--name", "bench", "--scopes", "external_data_source:read,external_data_source:write", "--projects", "all"]);
        if (exit != 0) throw new InvalidOperationException($"api-keys create failed: {output}");
        var key = output.TrimEnd().Split('\n').Last().Trim();

        var results = new Dictionary<string, List<(double Ms, double RssMb)>>();
        // Production compiling at runtime (the baseline), Production's pre-generated code, and Development as a newcomer's
        // `dotnet run` starts it (the pre-generated code, compiling only what is missing, ADR 0054).
        foreach (var (mode, name) in new[] { ("Dynamic", "Production"), ("Static", "Production"), ("Auto", "Development") })
        {
            var label = $"{mode} ({name})";
            results[label] = [];
            var settings = new Dictionary<string, string>(environment) { ["ASPNETCORE_ENVIRONMENT"] = name, ["DOTNET_ENVIRONMENT"] = name };
            for (var run = 0; run < runs; run++) results[label].Add(await StartOnceAsync(dll, settings, mode, key));
        }

        Console.WriteLine($"Cold start: process start to the first 200 of POST source_prefix/, and resident memory then; median of {runs} starts per mode; " +
                          $"{Environment.ProcessorCount} cores, local PostgreSQL 15");
        Console.WriteLine();
        Console.WriteLine("| generated code | start → first write 200 (ms) | RSS (MiB) | time / Dynamic | memory / Dynamic |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        var baseline = (Ms: Measure.Median(results["Dynamic (Production)"].Select(r => r.Ms)), Rss: Measure.Median(results["Dynamic (Production)"].Select(r => r.RssMb)));
        foreach (var (mode, samples) in results)
        {
            var ms = Measure.Median(samples.Select(r => r.Ms));
            var rss = Measure.Median(samples.Select(r => r.RssMb));
            var what = mode.StartsWith("Dynamic", StringComparison.Ordinal) ? " (compiled at runtime, baseline)"
                : mode.StartsWith("Static", StringComparison.Ordinal) ? " (pre-generated, the Production default)" : " (pre-generated, compiling what is missing: the Development default)";
            Console.WriteLine($"| {mode}{what} | {ms:F0} | {rss:F0} | {ms / baseline.Ms:F2}x | {rss / baseline.Rss:F2}x |");
        }
    }

    private static async Task<(double Ms, double RssMb)> StartOnceAsync(string dll, Dictionary<string, string> environment, string mode, string key)
    {
        var port = FreePort();
        var start = new ProcessStartInfo("dotnet", [dll, "--urls", $"http://127.0.0.1:{port}"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (k, v) in environment) start.Environment[k] = v;
        start.Environment["ExternalData__GeneratedCode"] = mode;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            while (clock.Elapsed < TimeSpan.FromSeconds(60))
            {
                try
                {
                    using var response = await http.PostAsync($"http://127.0.0.1:{port}/api/projects/1/external_data_sources/source_prefix/",
                        new StringContent("""{"source_type": "Postgres", "prefix": "cold"}""", Encoding.UTF8, "application/json"));
                    if (response.StatusCode == HttpStatusCode.OK) return (clock.Elapsed.TotalMilliseconds, RssMb(process.Id));
                    if ((int)response.StatusCode >= 400 && response.StatusCode != HttpStatusCode.ServiceUnavailable)
                        throw new InvalidOperationException($"{mode}: source_prefix answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                }
                catch (HttpRequestException) { }
                catch (TaskCanceledException) { }

                await Task.Delay(20);
            }

            throw new TimeoutException($"{mode}: no 200 within 60 s");
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    private static double RssMb(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024;
    }

    private static async Task<(int Exit, string Output)> RunToEndAsync(string dll, Dictionary<string, string> environment, string[] args)
    {
        var start = new ProcessStartInfo("dotnet", [dll, .. args]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (k, v) in environment) start.Environment[k] = v;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var output = await stdout;
        return (process.ExitCode, process.ExitCode == 0 ? output : output + await stderr);
    }

    /// <summary>The service's own build output (Release, as the bench is run), found from the repository root.</summary>
    private static string ApiDll()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "ExternalData.EventSourced.sln"))) continue;
            var dll = Path.Combine(dir.FullName, "src", "ExternalData.EventSourced.Api", "bin", "Release", "net10.0", "ExternalData.EventSourced.Api.dll");
            if (File.Exists(dll)) return dll;
            throw new FileNotFoundException("Build the service in Release first (the bench's own Release build does).", dll);
        }

        throw new DirectoryNotFoundException("the repository root");
    }


    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
