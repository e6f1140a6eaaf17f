using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace ExternalData.EventSourced.LocalPostgres;

/// <summary>
/// A PostgreSQL cluster run from the local server binaries (initdb / pg_ctl), for the default development run
/// and for tests on machines without Docker. Started with <c>wal_level=logical</c> so CDC works against it.
/// As root, the server runs as the <c>postgres</c> OS user (initdb refuses root).
/// </summary>
public sealed class LocalPostgresCluster : IAsyncDisposable
{
    private readonly string _root;
    private readonly bool _removeOnStop;
    private readonly Action<string> _log;
    private readonly bool _attached;
    private bool _stopped;
    private string? _startOptions;

    private LocalPostgresCluster(string root, int port, bool removeOnStop, Action<string> log, bool attached = false)
    {
        _root = root;
        Port = port;
        SuperuserPassword = File.ReadAllText(Path.Combine(root, "superuser.password")).Trim();
        _removeOnStop = removeOnStop;
        _log = log;
        _attached = attached;
    }

    public int Port { get; }
    public string SuperuserPassword { get; }
    public string DataDirectory => Path.Combine(_root, "data");
    public string ConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Password={SuperuserPassword};Database=postgres;Pooling=true;Maximum Pool Size=50";

    public static bool BinariesAvailable() => FindBinary("pg_ctl") is not null && FindBinary("initdb") is not null;

    /// <summary>Starts (or re-attaches to) the cluster under <paramref name="root"/>. A persistent cluster keeps
    /// its data between runs; a throwaway one is deleted on stop.</summary>
    public static async Task<LocalPostgresCluster> StartAsync(string root, bool persistent, Action<string>? log = null, CancellationToken ct = default) =>
        await StartAsync(root, persistent, settings: null, log, ct);

    /// <summary>The server settings a cluster starts with unless overridden: logical WAL for CDC, room for slots and
    /// senders, and retained WAL capped so a forgotten slot cannot fill the disk.</summary>
    public static readonly IReadOnlyDictionary<string, string> DefaultSettings = new Dictionary<string, string>
    {
        ["wal_level"] = "logical",
        ["max_replication_slots"] = "20",
        ["max_wal_senders"] = "20",
        ["max_connections"] = "200",
        ["max_slot_wal_keep_size"] = "4GB",
    };

    /// <summary>As above, with <paramref name="settings"/> overriding <see cref="DefaultSettings"/> (tests start
    /// deliberately misconfigured servers this way).</summary>
    public static async Task<LocalPostgresCluster> StartAsync(
        string root, bool persistent, IReadOnlyDictionary<string, string>? settings, Action<string>? log = null, CancellationToken ct = default, int? preferredPort = null)
    {
        var cluster = await BeginStartAsync(root, persistent, settings, log, ct, preferredPort);
#pragma warning disable VSTHRD003 // the start this call began
        await cluster.Ready;
#pragma warning restore VSTHRD003
        return cluster;
    }

    /// <summary>Completes when the server accepts connections (at once for a cluster this process attached to).</summary>
    public Task Ready { get; private set; } = Task.CompletedTask;

    /// <summary>As <see cref="StartAsync(string, bool, IReadOnlyDictionary{string, string}?, Action{string}?, CancellationToken, int?)"/>,
    /// but returns once the cluster's folder, port and password are settled (its connection string is known) and starts the
    /// server in the background: the service builds its host meanwhile, on the other core, instead of waiting for
    /// <c>pg_ctl</c> (issue 23's start). Await <see cref="Ready"/> before the first connection.</summary>
    public static async Task<LocalPostgresCluster> BeginStartAsync(
        string root, bool persistent, IReadOnlyDictionary<string, string>? settings, Action<string>? log = null, CancellationToken ct = default, int? preferredPort = null)
    {
        log ??= _ => { };
        var pgCtl = FindBinary("pg_ctl") ?? throw new InvalidOperationException("PostgreSQL server binaries (pg_ctl, initdb) were not found on PATH or under /usr/lib/postgresql.");
        var initdb = FindBinary("initdb")!;
        root = PrepareRoot(Path.GetFullPath(root));
        var data = Path.Combine(root, "data");

        if (!File.Exists(Path.Combine(data, "PG_VERSION")))
        {
            log($"Initialising a local PostgreSQL cluster in {data}");
            // TCP connections need a password (so a wrong one fails, as on a real server); the local socket is trusted.
            var passwordFile = Path.Combine(root, "superuser.password");
            await File.WriteAllTextAsync(passwordFile, Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)), ct);
            if (IsRoot) RunSync("chown", ["postgres:postgres", passwordFile]);
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            await RunAsync(initdb, ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", $"--pwfile={passwordFile}",
                "-E", "UTF8", "--no-sync", "--locale=C"], ct);
        }
        else if (await TryReadRunningPortAsync(pgCtl, data, ct) is { } runningPort)
        {
            log($"Re-using the local PostgreSQL already running on port {runningPort}");
            return new LocalPostgresCluster(root, runningPort, removeOnStop: false, log, attached: true);
        }

        var port = preferredPort is { } wanted && IsFree(wanted) ? wanted : FreePort();
        var merged = new Dictionary<string, string>(DefaultSettings);
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) merged[key] = value;
        var options = string.Join(' ',
            "-c listen_addresses=127.0.0.1", $"-p {port}", $"-c unix_socket_directories={root}",
            string.Join(' ', merged.Select(kv => $"-c {kv.Key}={kv.Value}")),
            persistent ? "" : "-c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        var cluster = new LocalPostgresCluster(root, port, !persistent, log) { _startOptions = options };
        cluster.Ready = cluster.StartServerAsync(pgCtl, ct);
        return cluster;
    }

    private async Task StartServerAsync(string pgCtl, CancellationToken ct)
    {
        // -l is essential: without a log file the postmaster inherits our stdout and the call never returns.
        await RunAsync(pgCtl, ["-D", DataDirectory, "-l", Path.Combine(_root, "postgres.log"), "-w", "-t", "60", "-o", _startOptions!, "start"], ct);
        _log($"Local PostgreSQL listening on 127.0.0.1:{Port}");
        await WaitUntilReadyAsync(ct);
    }

    /// <summary>Stops the server. A cluster this process only attached to (started by a running service, while an
    /// operator command runs) is left alone unless <paramref name="evenIfAttached"/>: the service owns it.</summary>
    public async Task StopAsync(bool evenIfAttached = false)
    {
        if (_stopped || (_attached && !evenIfAttached)) return;
        _stopped = true;
        // A server still starting is stopped once it has started; a start that failed was reported to whoever awaited it.
#pragma warning disable VSTHRD003 // Ready is this cluster's own start; a console host and tests have no synchronization context to deadlock on.
        try { await Ready; }
        catch (Exception) { }
#pragma warning restore VSTHRD003
        try
        {
            await RunAsync(FindBinary("pg_ctl")!, ["-D", DataDirectory, "-m", "fast", "-w", "stop"], CancellationToken.None);
            _log("Local PostgreSQL stopped");
        }
        catch (InvalidOperationException e)
        {
            _log("Stopping the local PostgreSQL failed: " + e.Message);
        }

        if (_removeOnStop)
        {
            try { Directory.Delete(_root, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    public ValueTask DisposeAsync() => new(StopAsync());

    /// <summary>Kills the server as a crash would (<c>pg_ctl stop -m immediate</c>: no checkpoint, every connection
    /// cut); <see cref="StartAgainAsync"/> brings it back on the same port with the same settings, through recovery.</summary>
    public Task CrashAsync() =>
        RunAsync(FindBinary("pg_ctl")!, ["-D", DataDirectory, "-m", "immediate", "-w", "stop"], CancellationToken.None);

    public async Task StartAgainAsync(CancellationToken ct = default)
    {
        if (_startOptions is null) throw new InvalidOperationException("Only a cluster this process started can be started again.");
        await RunAsync(FindBinary("pg_ctl")!, ["-D", DataDirectory, "-l", Path.Combine(_root, "postgres.log"), "-w", "-t", "60", "-o", _startOptions, "start"], ct);
        await WaitUntilReadyAsync(ct);
    }

    private async Task WaitUntilReadyAsync(CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await using var connection = new NpgsqlConnection(ConnectionString + ";Pooling=false");
                await connection.OpenAsync(ct);
                return;
            }
            catch (NpgsqlException) when (attempt < 50)
            {
                await Task.Delay(100, ct);
            }
        }
    }

    private static async Task<int?> TryReadRunningPortAsync(string pgCtl, string data, CancellationToken ct)
    {
        var pidFile = Path.Combine(data, "postmaster.pid");
        if (!File.Exists(pidFile)) return null;
        try
        {
            await RunAsync(pgCtl, ["-D", data, "status"], ct);
        }
        catch (InvalidOperationException)
        {
            return null; // stale pid file: pg_ctl start copes with it
        }

        var lines = await File.ReadAllLinesAsync(pidFile, ct);
        return lines.Length > 3 && int.TryParse(lines[3], out var port) ? port : null;
    }

    private static bool IsRoot => Environment.UserName == "root" || (OperatingSystem.IsLinux() && geteuid() == 0);

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern uint geteuid();

    /// <summary>As root, the folder must belong to, and be reachable by, the postgres user. A folder under a
    /// private home directory is not, so such a cluster moves to a per-folder place under /var/tmp.</summary>
    private static string PrepareRoot(string root)
    {
        Directory.CreateDirectory(root);
        if (!IsRoot) return root;
        // A cluster that ran from this folder before is the postgres user's already: the reach test and the recursive chown
        // (a quarter of a second of every start, most of it walking the data folder) are for a new or moved folder.
        if (IsOwnedByPostgres(Path.Combine(root, "data", "PG_VERSION"))) return root;

        if (!CanPostgresUserReach(root))
        {
            var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(root)))[..12];
            var fallback = Path.Combine("/var/tmp", $"externaldata-pg-{hash}");
            Console.Error.WriteLine($"The postgres OS user cannot reach {root}; using {fallback} for the local cluster instead.");
            root = fallback;
            Directory.CreateDirectory(root);
        }

        RunSync("chown", ["-R", "postgres:postgres", root]);
        return root;
    }

    private static bool CanPostgresUserReach(string directory)
    {
        RunSync("chown", ["postgres:postgres", directory]);
        return RunSync("runuser", ["-u", "postgres", "--", "test", "-w", directory]) == 0;
    }

    private static bool IsOwnedByPostgres(string path)
    {
        if (!File.Exists(path)) return false;
        using var process = Process.Start(new ProcessStartInfo("stat", ["-c", "%U", path]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var owner = process.StandardOutput.ReadToEnd().Trim();
        process.WaitForExit();
        return process.ExitCode == 0 && owner == "postgres";
    }

    private static int RunSync(string file, string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        process.WaitForExit();
        return process.ExitCode;
    }

    private static async Task RunAsync(string binary, string[] args, CancellationToken ct)
    {
        var start = IsRoot
            ? new ProcessStartInfo("runuser", ["-u", "postgres", "--", binary, .. args])
            : new ProcessStartInfo(binary, args);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.WorkingDirectory = "/tmp";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(binary)} exited with {process.ExitCode}: {await stderr}{await stdout}".Trim());
    }

    private static string? FindBinary(string name)
    {
        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
        if (onPath is not null) return onPath;
        return Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").OrderDescending().Select(d => Path.Combine(d, "bin", name)).FirstOrDefault(File.Exists)
            : null;
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
