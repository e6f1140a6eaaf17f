using ExternalData.EventSourced.LocalPostgres;

namespace ExternalData.EventSourced.Infrastructure.LocalPostgres;

/// <summary>
/// The default run: with no <c>ConnectionStrings:Marten</c> configured, start a local PostgreSQL in the data
/// folder under the working directory. It is stopped when the program ends (after the host has fully stopped,
/// so no background agent is cut off mid-query), on Ctrl-C and SIGTERM alike.
/// </summary>
public sealed class EmbeddedDatabase : IAsyncDisposable
{
    public const string LocalDataFolder = ".local";
    public const int PreferredPort = 54329;
    private readonly LocalPostgresCluster? _cluster;
    private readonly bool _ownsServer;

    private EmbeddedDatabase(string connectionString, LocalPostgresCluster? cluster, bool ownsServer)
    {
        ConnectionString = connectionString;
        _cluster = cluster;
        _ownsServer = ownsServer;
    }

    public string ConnectionString { get; }
    public bool IsEmbedded => _cluster is not null;

    /// <param name="isServiceRun">The service owns the cluster even when it re-attaches to one a crash left running;
    /// an operator command run beside a live service must leave that service's cluster alone.</param>
    public static async Task<EmbeddedDatabase> ResolveAsync(WebApplicationBuilder builder, bool isServiceRun)
    {
        var configured = builder.Configuration.GetConnectionString("Marten");
        if (!string.IsNullOrWhiteSpace(configured)) return new EmbeddedDatabase(configured, null, false);

        // A fixed port when it is free, so the demo source's connection values stay what the README says.
        var cluster = await LocalPostgresCluster.StartAsync(
            Path.Combine(builder.Environment.ContentRootPath, LocalDataFolder, "postgres"),
            persistent: true,
            settings: null,
            log: message => Console.Error.WriteLine(message),
            preferredPort: PreferredPort);
        return new EmbeddedDatabase(cluster.ConnectionString, cluster, isServiceRun);
    }

    public static bool IsServiceRun(string[] args) => args.Length == 0 || args[0].StartsWith('-') || args[0] == "run";

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null) await _cluster.StopAsync(evenIfAttached: _ownsServer);
    }
}
