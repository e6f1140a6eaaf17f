using Npgsql;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>
/// A second database in the same server that plays the customer's Postgres: a few tables of every kind
/// discovery must tell apart, and a login role with a password that can read some of them.
/// </summary>
public sealed class SourceDatabase
{
    public const string Reader = "source_reader";

    public required string Name { get; init; }
    public required string Host { get; init; }
    public required int Port { get; init; }
    public required string ReaderPassword { get; init; }

    public static async Task<SourceDatabase> CreateAsync(TestDatabase server)
    {
        var name = $"source_{Guid.NewGuid():N}"[..20];
        var password = $"pw-{Guid.NewGuid():N}";
        await using (var admin = new NpgsqlConnection(server.ConnectionStringFor("postgres")))
        {
            await admin.OpenAsync();
            await Execute(admin, $"CREATE DATABASE {name}");
            await Execute(admin, $"""
                DO $$ BEGIN
                  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Reader}') THEN CREATE ROLE {Reader} LOGIN; END IF;
                END $$;
                ALTER ROLE {Reader} PASSWORD '{password}';
                """);
        }

        await using (var db = new NpgsqlConnection(server.ConnectionStringFor(name)))
        {
            await db.OpenAsync();
            await Execute(db, $"""
                CREATE TABLE public.orders (id int PRIMARY KEY, total numeric, updated_at timestamptz, created_at timestamptz);
                CREATE INDEX ON public.orders (updated_at);
                COMMENT ON TABLE public.orders IS 'Customer orders';
                CREATE TABLE public.customers (id bigint PRIMARY KEY, email text NOT NULL, created_at timestamptz);
                CREATE TABLE public.events (seq bigint, payload text);
                CREATE TABLE public.payroll (id int PRIMARY KEY, salary numeric);
                CREATE TABLE public.tenant_notes (id int PRIMARY KEY, note text, modified_at timestamp);
                ALTER TABLE public.tenant_notes ENABLE ROW LEVEL SECURITY;
                CREATE VIEW public.big_orders AS SELECT * FROM public.orders WHERE total > 100;
                CREATE SCHEMA sales;
                CREATE TABLE sales.leads (id int PRIMARY KEY, updated_at timestamptz);
                INSERT INTO public.orders SELECT g, g * 1.5, now(), now() FROM generate_series(1, 50) g;
                ANALYZE public.orders;
                GRANT USAGE ON SCHEMA sales TO {Reader};
                GRANT SELECT ON public.orders, public.customers, public.events, public.tenant_notes, public.big_orders, sales.leads TO {Reader};
                """);
        }

        return new SourceDatabase { Name = name, Host = server.Host, Port = server.Port, ReaderPassword = password };
    }

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
