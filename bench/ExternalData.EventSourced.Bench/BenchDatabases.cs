using ExternalData.EventSourced.LocalPostgres;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>Source databases of N identical tables <c>t1..tN</c>, in the bench's cluster.</summary>
internal static class BenchDatabases
{
    public static async Task<string> CreateAsync(LocalPostgresCluster cluster, string name, int tables, string columns)
    {
        await using (var connection = new NpgsqlConnection(cluster.ConnectionString))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await create.ExecuteNonQueryAsync();
        }

        await using var db = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = name }.ConnectionString);
        await db.OpenAsync();
        // A thousand tables a transaction: one transaction creating 5,000 runs out of lock slots.
        for (var from = 1; from <= tables; from += 1000)
        {
            await using var command = new NpgsqlCommand($"""
                DO $$ BEGIN
                  FOR i IN {from}..{Math.Min(tables, from + 999)} LOOP
                    EXECUTE format('CREATE TABLE public.t%s ({columns})', i);
                  END LOOP;
                END $$;
                """, db) { CommandTimeout = 600 };
            await command.ExecuteNonQueryAsync();
        }

        await using var analyze = new NpgsqlCommand("ANALYZE", db) { CommandTimeout = 600 };
        await analyze.ExecuteNonQueryAsync();
        return name;
    }
}
