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

    /// <summary>Completes when the database accepts connections. The embedded server starts while the host is built;
    /// await this before the host starts (its first connection).</summary>
    public async Task WhenReadyAsync()
    {
        if (_cluster is null) return;
#pragma warning disable VSTHRD003 // the start ResolveAsync began; the program's main flow has no synchronization context
        await _cluster.Ready;
#pragma warning restore VSTHRD003
    }

    /// <param name="isServiceRun">The service owns the cluster even when it re-attaches to one a crash left running;
    /// an operator command run beside a live service must leave that service's cluster alone.</param>
    public static async Task<EmbeddedDatabase> ResolveAsync(WebApplicationBuilder builder, bool isServiceRun)
    {
        var configured = builder.Configuration.GetConnectionString("Marten");
        if (!string.IsNullOrWhiteSpace(configured)) return new EmbeddedDatabase(configured, null, false);

        // A fixed port when it is free, so the demo source's connection values stay what the README says.
        var cluster = await LocalPostgresCluster.BeginStartAsync(
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
