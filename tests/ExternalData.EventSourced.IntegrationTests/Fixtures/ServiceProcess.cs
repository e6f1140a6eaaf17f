using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>
/// The service as a real process on a real port (Kestrel), on the suite's database: what a browser talks to. It is
/// a second node beside the in-process host, so a link issued by either works on both (the Data Protection keys are
/// in the database).
/// </summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _output = new();

    private ServiceProcess(Process process, string baseUrl)
    {
        _process = process;
        BaseUrl = baseUrl;
    }

    public string BaseUrl { get; }
    public string Output { get { lock (_output) return _output.ToString(); } }

    public int ProcessId => _process.Id;

    /// <summary>The process's resident memory now (VmRSS), in MiB.</summary>
    public double ResidentMiB
    {
        get
        {
            _process.Refresh();
            return _process.WorkingSet64 / 1024.0 / 1024.0;
        }
    }

    public static Task<ServiceProcess> StartAsync(AppFixture app, IDictionary<string, string>? environment = null) =>
        StartAsync(app.Server.ServiceConnectionString, app.Schema, app.Stripe.ApiBase, environment);

    /// <summary>A node on any database and schema; <paramref name="port"/> lets a node killed earlier come back on its address.</summary>
    public static async Task<ServiceProcess> StartAsync(
        string connectionString, string schema, string stripeApiBase, IDictionary<string, string>? environment = null, int? port = null)
    {
        port ??= FreePort();
        var baseUrl = $"http://127.0.0.1:{port}";
        var dll = typeof(Program).Assembly.Location;
        var start = new ProcessStartInfo("dotnet", [dll, "--urls", baseUrl])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Testing";
        start.Environment["ConnectionStrings__Marten"] = connectionString;
        start.Environment["ExternalData__Database__Schema"] = schema;
        start.Environment[$"ExternalData__Encryption__MasterKeys__{AppFixture.MasterKeyId}"] = AppFixture.MasterKey;
        start.Environment["ExternalData__Encryption__ActiveMasterKeyId"] = AppFixture.MasterKeyId;
        start.Environment["ExternalData__Network__AllowPrivateHosts"] = "true";
        start.Environment["ExternalData__Stripe__ApiBase"] = stripeApiBase;
        start.Environment["ExternalData__ConnectLinks__PublicBaseUrl"] = baseUrl;
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;

        var process = Process.Start(start)!;
        var service = new ServiceProcess(process, baseUrl);
        process.OutputDataReceived += (_, e) => service.Append(e.Data);
        process.ErrorDataReceived += (_, e) => service.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new InvalidOperationException($"The service exited with {process.ExitCode}:\n{service.Output}");
            try
            {
                if ((await http.GetAsync($"{baseUrl}/health/ready")).StatusCode == HttpStatusCode.OK) return service;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }

            await Task.Delay(200);
        }

        await service.DisposeAsync();
        throw new TimeoutException($"The service did not become ready:\n{service.Output}");
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>kill -9: no shutdown hook, no flush, no graceful drain — a crashed node.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    public int Port => new Uri(BaseUrl).Port;

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
