using System.Net.Sockets;
using ExternalData.EventSourced.LocalPostgres;
using Testcontainers.PostgreSql;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>
/// A real PostgreSQL for the tests, found in this order: a connection string in <c>TEST_POSTGRES</c>; else a
/// Testcontainers container when a Docker engine answers; else a throwaway cluster from the local server binaries
/// (random port, temp folder, <c>wal_level=logical</c>, removed afterwards). Never skipped: one of them is there.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private LocalPostgresCluster? _cluster;
    private PostgreSqlContainer? _container;

    public string AdminConnectionString { get; private set; } = "";
    public string Host { get; private set; } = "127.0.0.1";
    public int Port { get; private set; }
    public string Origin { get; private set; } = "";

    /// <summary>The suite's server, or (with <paramref name="settings"/>) an extra one configured differently: those
    /// never come from <c>TEST_POSTGRES</c>, which names one server.</summary>
    public static async Task<TestDatabase> StartAsync(IReadOnlyDictionary<string, string>? settings = null)
    {
        var database = new TestDatabase();
        var fromEnvironment = Environment.GetEnvironmentVariable("TEST_POSTGRES");
        if (settings is null && !string.IsNullOrWhiteSpace(fromEnvironment))
        {
            database.Use(fromEnvironment, "TEST_POSTGRES");
        }
        else if (await DockerEngineAnswersAsync())
        {
            var merged = new Dictionary<string, string>(LocalPostgresCluster.DefaultSettings);
            foreach (var (key, value) in settings ?? new Dictionary<string, string>()) merged[key] = value;
            // A fixed host port, so a container started again after a crash (CrashAsync) keeps its address.
            database._container = new PostgreSqlBuilder("postgres:15-alpine")
                .WithCommand(merged.SelectMany(kv => new[] { "-c", $"{kv.Key}={kv.Value}" }).ToArray())
                .WithPortBinding(FreePort(), 5432)
                .Build();
            await database._container.StartAsync();
            database.Use(database._container.GetConnectionString(), "Testcontainers");
        }
        else
        {
            var root = Path.Combine(Environment.GetEnvironmentVariable("TEST_PG_ROOT") ?? Path.GetTempPath(), $"externaldata-pg-{Guid.NewGuid():N}");
            database._cluster = await LocalPostgresCluster.StartAsync(root, persistent: false, settings);
            database.Use(database._cluster.ConnectionString, "local binaries");
        }

        return database;
    }

    private void Use(string connectionString, string origin)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        AdminConnectionString = builder.ConnectionString;
        Host = builder.Host ?? "127.0.0.1";
        Port = builder.Port;
        Origin = origin;
    }

    /// <summary>The service's own database as a service under test connects to it: pooled, as in production. (A test's own
    /// connections are not pooled, so a database a test drops has no idle connection left in a pool.)</summary>
    public string ServiceConnectionString => new Npgsql.NpgsqlConnectionStringBuilder(ConnectionStringFor("postgres")) { Pooling = true }.ConnectionString;

    public string ConnectionStringFor(string database, string? user = null, string? password = null)
    {
        var builder = new Npgsql.NpgsqlConnectionStringBuilder(AdminConnectionString) { Database = database, Pooling = false };
        if (user is not null) builder.Username = user;
        if (password is not null) builder.Password = password;
        return builder.ConnectionString;
    }

    /// <summary>A libpq URI for <paramref name="database"/> as the admin, for command-line clients such as psql.</summary>
    public string UriFor(string database)
    {
        var admin = new Npgsql.NpgsqlConnectionStringBuilder(AdminConnectionString);
        return $"postgresql://{Uri.EscapeDataString(admin.Username ?? "postgres")}:{Uri.EscapeDataString(admin.Password ?? "")}@{admin.Host}:{admin.Port}/{database}";
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>A Docker CLI without an engine is common (this workplace has one); only a live socket counts.</summary>
    private static async Task<bool> DockerEngineAnswersAsync()
    {
        var dockerHost = Environment.GetEnvironmentVariable("DOCKER_HOST");
        try
        {
            if (dockerHost is { Length: > 0 } && dockerHost.StartsWith("tcp://", StringComparison.Ordinal))
            {
                var uri = new Uri(dockerHost);
                using var tcp = new TcpClient();
                await tcp.ConnectAsync(uri.Host, uri.Port).WaitAsync(TimeSpan.FromSeconds(2));
                return true;
            }

            var path = dockerHost is { Length: > 0 } && dockerHost.StartsWith("unix://", StringComparison.Ordinal) ? dockerHost["unix://".Length..] : "/var/run/docker.sock";
            if (!File.Exists(path)) return false;
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path)).WaitAsync(TimeSpan.FromSeconds(2));
            return true;
        }
        catch (Exception e) when (e is SocketException or TimeoutException or IOException)
        {
            return false;
        }
    }

    /// <summary>A database crash: the server dies with every connection (pg_ctl stop -m immediate, or the container's
    /// postmaster killed), to be started again by <see cref="StartAgainAsync"/> on the same address.</summary>
    public async Task CrashAsync()
    {
        if (_cluster is not null) await _cluster.CrashAsync();
        else if (_container is not null) await _container.ExecAsync(["su", "postgres", "-c", "pg_ctl -D \"$PGDATA\" stop -m immediate"]);
        else throw new InvalidOperationException("A server named by TEST_POSTGRES is not ours to crash.");
    }

    public async Task StartAgainAsync()
    {
        if (_cluster is not null) await _cluster.StartAgainAsync();
        else if (_container is not null) await _container.StartAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null) await _cluster.StopAsync();
        if (_container is not null) await _container.DisposeAsync();
    }
}
