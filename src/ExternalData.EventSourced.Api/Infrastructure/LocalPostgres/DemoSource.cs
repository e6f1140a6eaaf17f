using Npgsql;

namespace ExternalData.EventSourced.Infrastructure.LocalPostgres;

/// <summary>
/// A small sample database a newcomer can connect as a source (API.md §8), created beside the service's own store
/// on first start in Development: tables that show what discovery tells apart (a cursor on <c>updated_at</c>, one
/// with only <c>created_at</c>, one without a primary key, a view, one the demo role may not read), about 10k rows,
/// and a read-only login role. Its connection values are printed once, when it is created.
/// </summary>
public sealed class DemoSource(string storeConnectionString, ILogger<DemoSource> logger) : IHostedService
{
    public const string Database = "demo_shop";
    public const string Role = "demo_reader";
    // A demo role on a local development server, readable only from this machine: its password is not a secret,
    // and the README uses it verbatim.
    public const string Password = "demo-reader-password";

    public async Task StartAsync(CancellationToken ct)
    {
        var admin = new NpgsqlConnectionStringBuilder(storeConnectionString) { Database = "postgres", Pooling = false };
        try
        {
            await using var server = new NpgsqlConnection(admin.ConnectionString);
            await server.OpenAsync(ct);
            await using (var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", server))
            {
                exists.Parameters.AddWithValue("name", Database);
                if (await exists.ExecuteScalarAsync(ct) is not null) return;
            }

            await Execute(server, $"""
                DO $$ BEGIN
                  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{Role}') THEN CREATE ROLE {Role} LOGIN PASSWORD '{Password}'; END IF;
                END $$;
                """, ct);
            await Execute(server, $"CREATE DATABASE {Database}", ct);

            await using var demo = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(admin.ConnectionString) { Database = Database }.ConnectionString);
            await demo.OpenAsync(ct);
            await Execute(demo, $"""
                CREATE TABLE public.customers (id bigint PRIMARY KEY, email text NOT NULL, country text, created_at timestamptz NOT NULL);
                CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES public.customers, total numeric(10,2), status text,
                                            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
                CREATE INDEX ON public.orders (updated_at);
                COMMENT ON TABLE public.orders IS 'One row per order; updated_at moves on every status change';
                CREATE TABLE public.page_views (viewed_at timestamptz NOT NULL, path text, customer_id bigint);
                CREATE TABLE public.payroll (id int PRIMARY KEY, employee text, salary numeric);
                CREATE VIEW public.big_orders AS SELECT * FROM public.orders WHERE total > 400;
                INSERT INTO public.customers SELECT g, 'customer' || g || '@example.com', (ARRAY['US','DE','FR','BR'])[1 + g % 4], now() - g * interval '1 hour'
                  FROM generate_series(1, 2000) g;
                INSERT INTO public.orders SELECT g, 1 + g % 2000, (g % 500) + 0.99, (ARRAY['placed','paid','shipped'])[1 + g % 3],
                  now() - g * interval '10 minutes', now() - g * interval '5 minutes' FROM generate_series(1, 5000) g;
                INSERT INTO public.page_views SELECT now() - g * interval '1 minute', '/p/' || (g % 50), 1 + g % 2000 FROM generate_series(1, 3000) g;
                INSERT INTO public.payroll VALUES (1, 'Ada', 100000), (2, 'Grace', 110000);
                ANALYZE;
                GRANT USAGE ON SCHEMA public TO {Role};
                GRANT SELECT ON public.customers, public.orders, public.page_views, public.big_orders TO {Role};
                """, ct);

            Console.WriteLine();
            Console.WriteLine("  Demo source database (created now; the README's \"Try it\" uses it):");
            Console.WriteLine($"    host {admin.Host}  port {admin.Port}  database {Database}  user {Role}  password {Password}");
            Console.WriteLine();
        }
        catch (Exception e) when (e is NpgsqlException or ArgumentException or InvalidOperationException)
        {
            // The demo is a convenience: a server where it cannot be made (no CREATEDB right) still runs the service.
            logger.LogWarning("The demo source database could not be created: {Reason}", e.Message);
        }
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;

    private static async Task Execute(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }
}
