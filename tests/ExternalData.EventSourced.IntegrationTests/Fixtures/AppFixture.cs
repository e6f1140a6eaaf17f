using Alba;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.Infrastructure.Encryption;
using Marten;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Wolverine;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>
/// One service host for the whole suite, over a real PostgreSQL, with a real source database beside it. Tests
/// isolate themselves by using a fresh project id each (a tenant of its own), so nothing needs resetting.
/// </summary>
public sealed class AppFixture : IAsyncLifetime
{
    public const string MasterKeyId = "test1";
    public static readonly string MasterKey = SecretsCipher.NewMasterKey();

    public TestDatabase Server { get; private set; } = null!;
    public FakeStripeServer Stripe { get; private set; } = null!;
    public SourceDatabase Source { get; private set; } = null!;
    public IAlbaHost Host { get; private set; } = null!;
    public CapturedLogs Logs { get; } = new();
    public string Schema { get; } = $"edtest_{Guid.NewGuid():N}"[..20];
    public string AdminKey { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Server = await TestDatabase.StartAsync();
        Stripe = await FakeStripeServer.StartAsync();
        try
        {
            Source = await SourceDatabase.CreateAsync(Server);
            Host = await StartHostAsync(allowPrivateHosts: true);
            AdminKey = await IssueKeyAsync("test-admin", Scopes.All, [ApiKey.AllProjects]);
        }
        catch
        {
            await Server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts a service host on the suite's database. <paramref name="allowPrivateHosts"/> false is the
    /// production network policy.</summary>
    public Task<IAlbaHost> StartHostAsync(bool allowPrivateHosts, Action<IServiceCollection>? services = null, IDictionary<string, string>? settings = null) =>
        AlbaHost.For<Program>(builder =>
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("ConnectionStrings:Marten", Server.ServiceConnectionString);
        builder.UseSetting("ExternalData:Database:Schema", Schema);
        builder.UseSetting($"ExternalData:Encryption:MasterKeys:{MasterKeyId}", MasterKey);
        builder.UseSetting("ExternalData:Encryption:ActiveMasterKeyId", MasterKeyId);
        builder.UseSetting("ExternalData:Network:AllowPrivateHosts", allowPrivateHosts ? "true" : "false");
        builder.UseSetting("ExternalData:Stripe:ApiBase", Stripe.ApiBase);
        builder.UseSetting("ExternalData:Projections:StaleSequenceThresholdMs", "200");
        // Deliveries run truly in parallel here, so the de-duplication race is tested (production bounds them; ADR 0026).
        builder.UseSetting("ExternalData:Webhooks:ConcurrentDeliveries", "16");
        // Short, so the revocation test sees the window close quickly; the default is 10 s.
        builder.UseSetting("ExternalData:Auth:KeyCacheSeconds", "1");
        // A CDC source's consumer notices a table enabled or reset at its next look.
        builder.UseSetting("Cdc:CheckTablesEvery", "00:00:01");
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) builder.UseSetting(key, value);
        builder.ConfigureServices(collection =>
        {
            collection.AddSingleton<ILoggerProvider>(Logs);
            collection.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Debug));
            collection.RunWolverineInSoloMode();
            // No external transport is stubbed: sync runs go through Wolverine's PostgreSQL queue, on the test's own database (ADR 0050).
        });
        if (services is not null) builder.ConfigureServices(services);
    });

    public Task<string> IssueKeyAsync(string name, IEnumerable<string> scopes, IEnumerable<string> projects) => IssueKeyAsync(Host, name, scopes, projects);

    /// <summary>A key in the store of <paramref name="host"/> (a host on a schema of its own needs its own keys).</summary>
    public static async Task<string> IssueKeyAsync(IAlbaHost host, string name, IEnumerable<string> scopes, IEnumerable<string> projects)
    {
        var (key, token) = ApiKey.Issue(name, scopes, projects, DateTimeOffset.UtcNow);
        await using var session = host.Services.GetRequiredService<IDocumentStore>().LightweightSession();
        session.Store(key);
        await session.SaveChangesAsync();
        return token;
    }

    public ApiClient Client(string? key = null) => new(Host.Server.CreateClient(), key ?? AdminKey);

    public ApiClient Anonymous() => new(Host.Server.CreateClient(), apiKey: null);

    public async Task DisposeAsync()
    {
        if (Host is not null) await Host.DisposeAsync();
        if (Stripe is not null) await Stripe.DisposeAsync();
        await Server.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class IntegrationCollection : ICollectionFixture<AppFixture>
{
    public const string Name = "integration";
}

/// <summary>Every log line the host writes, at Debug and above, with exceptions: the canary test reads them.</summary>
public sealed class CapturedLogs : ILoggerProvider
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _lines = new();
    public IReadOnlyCollection<string> Lines => _lines;
    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);
    public void Dispose() { }

    private sealed class Logger(string category, System.Collections.Concurrent.ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = $"{logLevel} {category}: {formatter(state, exception)} {exception}";
            lines.Enqueue(line);
            // EDTEST_LOG_FILE=path keeps the errors of a run for reading afterwards.
            if (logLevel >= LogLevel.Error && Environment.GetEnvironmentVariable("EDTEST_LOG_FILE") is { Length: > 0 } file)
                lock (lines) File.AppendAllText(file, line + Environment.NewLine);
        }
    }
}
