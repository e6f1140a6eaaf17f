using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Npgsql;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>
/// A customer database ready for CDC on a given server: owned by <see cref="Owner"/> (a login role with
/// REPLICATION that owns every table, as a CDC user would), with tables of each kind the prerequisite checks must
/// tell apart, and two more roles: one without REPLICATION, one that pg_hba.conf refuses replication connections to.
/// </summary>
public sealed class CdcDatabase
{
    public const string Owner = "cdc_user";
    public const string NoReplication = "cdc_norepl";
    public const string NoReplicationLine = "cdc_no_hba";
    // A test-only password for throwaway servers.
    public const string Password = "cdc-test-password";

    private static readonly ConcurrentDictionary<string, Task> Prepared = new();

    private CdcDatabase(TestDatabase server, ScratchDatabase database)
    {
        Server = server;
        Database = database;
    }

    public TestDatabase Server { get; }
    public ScratchDatabase Database { get; }
    public string Name => Database.Name;

    public static async Task<CdcDatabase> CreateAsync(TestDatabase server)
    {
        await Prepared.GetOrAdd(server.AdminConnectionString, _ => PrepareServerAsync(server));
        var database = await ScratchDatabase.CreateAsync(server, "SELECT 1", prefix: "cdc");
        await using (var admin = new NpgsqlConnection(server.ConnectionStringFor("postgres")))
        {
            await admin.OpenAsync();
            await Execute(admin, $"ALTER DATABASE {database.Name} OWNER TO {Owner}");
        }

        await database.ExecuteAsync($"""
            SET ROLE {Owner};
            CREATE TABLE public.orders (id int PRIMARY KEY, total numeric, updated_at timestamptz);
            CREATE TABLE public.customers (id bigint PRIMARY KEY, email text);
            CREATE TABLE public.no_pk (seq bigint, payload text);
            CREATE TABLE public.no_identity (id int PRIMARY KEY, v text);
            ALTER TABLE public.no_identity REPLICA IDENTITY NOTHING;
            CREATE TABLE public.secret_table (id int PRIMARY KEY);
            REVOKE ALL ON public.secret_table FROM {Owner};
            CREATE TABLE public.notes (id int PRIMARY KEY, note text);
            ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
            RESET ROLE;
            """);
        return new CdcDatabase(server, database);
    }

    /// <summary>The roles (cluster-wide), and a pg_hba.conf line, written through SQL so it works on a container
    /// too, that refuses replication connections to <see cref="NoReplicationLine"/> before any line allows them.</summary>
    private static async Task PrepareServerAsync(TestDatabase server)
    {
        await using var admin = new NpgsqlConnection(server.ConnectionStringFor("postgres"));
        await admin.OpenAsync();
        await Execute(admin, $"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Owner}') THEN CREATE ROLE {Owner} LOGIN REPLICATION PASSWORD '{Password}'; END IF;
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{NoReplication}') THEN CREATE ROLE {NoReplication} LOGIN PASSWORD '{Password}' IN ROLE {Owner}; END IF;
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{NoReplicationLine}') THEN CREATE ROLE {NoReplicationLine} LOGIN REPLICATION PASSWORD '{Password}' IN ROLE {Owner}; END IF;
            END $$;
            """);
        await using var file = new NpgsqlCommand("SHOW hba_file", admin);
        var hbaFile = (string)(await file.ExecuteScalarAsync())!;
        await Execute(admin, $"""
            CREATE TEMP TABLE hba (n serial, line text);
            INSERT INTO hba (line) VALUES ('host replication {NoReplicationLine} all reject');
            INSERT INTO hba (line) SELECT replace(l, E'\t', ' ') FROM regexp_split_to_table(pg_read_file('{hbaFile}'), E'\n') l
              WHERE l NOT LIKE '%{NoReplicationLine}%';
            COPY (SELECT line FROM hba ORDER BY n) TO '{hbaFile}';
            SELECT pg_reload_conf();
            """);
    }

    /// <summary>The Postgres config a caller sends to reach this database as <paramref name="user"/>.</summary>
    public JsonObject Config(string user = Owner) => new()
    {
        ["host"] = Server.Host, ["port"] = Server.Port, ["database"] = Name, ["user"] = user, ["password"] = Password, ["schema"] = "public",
    };

    public Task ExecuteAsync(string sql) => Database.ExecuteAsync(sql);

    public async Task<T?> ScalarAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(Server.ConnectionStringFor(Name));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        var value = await command.ExecuteScalarAsync();
        return value is null or DBNull ? default : (T)value;
    }

    public Task DropAsync() => Database.DropAsync();

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}

/// <summary>
/// Servers that are wrong on purpose, for the prerequisite matrix: each differs from a good server in one setting.
/// Started once for the matrix, in parallel, and stopped after it.
/// </summary>
public sealed class CdcServers : IAsyncLifetime
{
    public TestDatabase ReplicaWalLevel { get; private set; } = null!;
    public TestDatabase NoFreeSlots { get; private set; } = null!;
    public TestDatabase UnboundedWalRetention { get; private set; } = null!;
    public TestDatabase NoFreeWalSenders { get; private set; } = null!;

    private static readonly Dictionary<string, string> Small = new() { ["max_connections"] = "30", ["shared_buffers"] = "16MB" };

    public async Task InitializeAsync()
    {
        var replica = TestDatabase.StartAsync(With(("wal_level", "replica")));
        var slots = TestDatabase.StartAsync(With(("max_replication_slots", "2")));
        var unbounded = TestDatabase.StartAsync(With(("max_slot_wal_keep_size", "-1")));
        var senders = TestDatabase.StartAsync(With(("max_wal_senders", "1")));
        (ReplicaWalLevel, NoFreeSlots, UnboundedWalRetention, NoFreeWalSenders) = (await replica, await slots, await unbounded, await senders);

        // Both slots taken by physical slots: no free one for CDC, whatever else is right.
        await using var admin = new NpgsqlConnection(NoFreeSlots.ConnectionStringFor("postgres"));
        await admin.OpenAsync();
        await using var fill = new NpgsqlCommand("SELECT pg_create_physical_replication_slot('standby_a'), pg_create_physical_replication_slot('standby_b')", admin);
        await fill.ExecuteNonQueryAsync();
    }

    private static Dictionary<string, string> With((string Key, string Value) setting) => new(Small) { [setting.Key] = setting.Value };

    public async Task DisposeAsync()
    {
        foreach (var server in new[] { ReplicaWalLevel, NoFreeSlots, UnboundedWalRetention, NoFreeWalSenders })
            if (server is not null) await server.DisposeAsync();
    }
}
