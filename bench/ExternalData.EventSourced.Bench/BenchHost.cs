using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Alba;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.LocalPostgres;
using Marten;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using Wolverine;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// The real service in-process, as the integration tests host it, in Production mode (pre-generated code) on a
/// schema of its own, with an all-projects API key and a client that sends it.
/// </summary>
internal sealed class BenchHost : IAsyncDisposable
{
    private BenchHost(IAlbaHost host, HttpClient http)
    {
        Host = host;
        Http = http;
    }

    public IAlbaHost Host { get; }
    public HttpClient Http { get; }
    public IDocumentStore Store => Host.Services.GetRequiredService<IDocumentStore>();

    public static async Task<BenchHost> StartAsync(LocalPostgresCluster cluster, string schema, IDictionary<string, string>? settings = null,
        Action<IServiceCollection>? services = null)
    {
        // Any type of the service assembly names its entry point (the bench has a Program of its own).
        var host = await AlbaHost.For<ExternalData.EventSourced.Sources.SourceDetails>(builder =>
        {
            builder.UseContentRoot(AppContext.BaseDirectory);
            builder.UseEnvironment("Production");
            builder.UseSetting("ConnectionStrings:Marten", cluster.ConnectionString);
            builder.UseSetting("ExternalData:Database:Schema", schema);
            builder.UseSetting("ExternalData:Encryption:MasterKeys:bench", Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
            builder.UseSetting("ExternalData:Network:AllowPrivateHosts", "true");
            foreach (var (key, value) in settings ?? new Dictionary<string, string>()) builder.UseSetting(key, value);
            builder.ConfigureServices(collection =>
            {
                collection.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Warning));
                collection.RunWolverineInSoloMode();
                // No external transport is stubbed: sync runs go through Wolverine's PostgreSQL queue, on the test's own database (ADR 0050).
                services?.Invoke(collection);
            });
        });
        var (key, token) = ApiKey.Issue("bench", Scopes.All, [ApiKey.AllProjects], DateTimeOffset.UtcNow);
        await using (var session = host.Services.GetRequiredService<IDocumentStore>().LightweightSession())
        {
            session.Store(key);
            await session.SaveChangesAsync();
        }

        var http = host.Server.CreateClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return new BenchHost(host, http);
    }

    /// <summary>The config of a bench source database, as a caller sends it (the cluster's superuser logs in).</summary>
    public static JsonObject PostgresConfig(LocalPostgresCluster cluster, string database)
    {
        var admin = new NpgsqlConnectionStringBuilder(cluster.ConnectionString);
        return new JsonObject
        {
            ["host"] = "127.0.0.1", ["port"] = cluster.Port, ["database"] = database, ["user"] = admin.Username, ["password"] = admin.Password, ["schema"] = "public",
        };
    }

    /// <summary>A create body for a Postgres source with its first table enabled.</summary>
    public static JsonObject PostgresSource(LocalPostgresCluster cluster, string database, string prefix)
    {
        var payload = PostgresConfig(cluster, database);
        payload["schemas"] = new JsonArray(new JsonObject { ["name"] = "t1", ["should_sync"] = true, ["sync_type"] = "full_refresh" });
        return new JsonObject { ["source_type"] = "Postgres", ["prefix"] = prefix, ["payload"] = payload };
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}
