using System.Text.Json.Nodes;
using Npgsql;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>A database of a test's own in the suite's server, for a test that shapes (and reshapes) the customer's
/// tables itself. The service connects to it as the server's admin role.</summary>
public sealed class ScratchDatabase
{
    private readonly TestDatabase _server;

    private ScratchDatabase(TestDatabase server, string name)
    {
        _server = server;
        Name = name;
    }

    public string Name { get; }

    public static async Task<ScratchDatabase> CreateAsync(TestDatabase server, string sql, string prefix = "scratch")
    {
        var name = $"{prefix}_{Guid.NewGuid():N}"[..24];
        await using (var admin = new NpgsqlConnection(server.ConnectionStringFor("postgres")))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        var database = new ScratchDatabase(server, name);
        await database.ExecuteAsync(sql);
        return database;
    }

    public async Task ExecuteAsync(string sql)
    {
        await using var db = new NpgsqlConnection(_server.ConnectionStringFor(Name));
        await db.OpenAsync();
        await using var command = new NpgsqlCommand(sql, db) { CommandTimeout = 600 };
        await command.ExecuteNonQueryAsync();
    }

    public async Task DropAsync()
    {
        await using var admin = new NpgsqlConnection(_server.ConnectionStringFor("postgres"));
        await admin.OpenAsync();
        // A CDC consumer of the service may be streaming from a slot of this database and reconnects when cut off: new
        // connections are refused first. A logical slot pins its database (DROP DATABASE refuses) and WAL on the whole
        // server: it goes next, once its walsender has let go.
        await using (var refuse = new NpgsqlCommand($"ALTER DATABASE {Name} ALLOW_CONNECTIONS false", admin))
        {
            try
            {
                await refuse.ExecuteNonQueryAsync();
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidCatalogName)
            {
                return;
            }
        }

        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await using (var slots = new NpgsqlCommand(
                    $"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{Name}' AND active_pid IS NOT NULL", admin))
                    await slots.ExecuteNonQueryAsync();
                await using (var slots = new NpgsqlCommand($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{Name}'", admin))
                    await slots.ExecuteNonQueryAsync();
                await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {Name} WITH (FORCE)", admin);
                await drop.ExecuteNonQueryAsync();
                return;
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse && attempt < 100)
            {
                await Task.Delay(100);
            }
        }
    }

    /// <summary>The Postgres config a caller would send for this database.</summary>
    public JsonObject Config()
    {
        var admin = new NpgsqlConnectionStringBuilder(_server.AdminConnectionString);
        return new JsonObject
        {
            ["host"] = _server.Host, ["port"] = _server.Port, ["database"] = Name, ["user"] = admin.Username,
            ["password"] = admin.Password ?? "", ["schema"] = "public",
        };
    }

    /// <summary>SQL that creates <paramref name="count"/> tables <c>t1..tN (id bigserial primary key, updated_at timestamptz, v text)</c>.</summary>
    public static string WideTables(int count) => $"""
        DO $$ BEGIN
          FOR i IN 1..{count} LOOP
            EXECUTE format('CREATE TABLE public.t%s (id bigserial PRIMARY KEY, updated_at timestamptz, v text)', i);
          END LOOP;
        END $$;
        ANALYZE;
        """;
}
