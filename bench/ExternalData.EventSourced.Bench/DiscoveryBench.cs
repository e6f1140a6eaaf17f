using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.LocalPostgres;
using ExternalData.EventSourced.SourceTypes.Network;
using ExternalData.EventSourced.SourceTypes.Postgres;
using Microsoft.Extensions.Options;
using Npgsql;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// Discovery cost: our Postgres discovery (one batch of two catalog statements) against the straightforward
/// per-table introspection through information_schema (one query for the table list, then columns and primary
/// key per table). Both run against the same throwaway local cluster; every statement sent is counted through
/// Npgsql's ActivitySource.
/// </summary>
internal static class DiscoveryBench
{
    public static async Task RunAsync(LocalPostgresCluster cluster, int[] sizes)
    {
        const int Runs = 5;
        var postgres = new PostgresSourceType(new HostPolicy(new AllowPrivate()));

        var statements = new ConcurrentBag<string>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => statements.Add(a.DisplayName),
        };
        ActivitySource.AddActivityListener(listener);

        Console.WriteLine($"Discovery of N tables (median of {Runs} runs after a warm-up; {Environment.ProcessorCount} cores)");
        Console.WriteLine();
        Console.WriteLine("| tables | ours (ms) | ours (statements) | per-table baseline (ms) | baseline (statements) | baseline / ours |");
        Console.WriteLine("|-------:|----------:|------------------:|------------------------:|----------------------:|----------------:|");
        foreach (var size in sizes)
        {
            var database = await CreateDatabaseAsync(size);
            var config = BenchHost.PostgresConfig(cluster, database);
            var connectionString = new NpgsqlConnectionStringBuilder(cluster.ConnectionString) { Database = database, Pooling = false }.ConnectionString;

            var (oursMs, oursStatements, oursTables) = await MeasureAsync(async () => (await postgres.DiscoverAsync(config, CancellationToken.None)).Tables.Count);
            var (baseMs, baseStatements, baseTables) = await MeasureAsync(() => PerTableBaselineAsync(connectionString));
            if (oursTables != size || baseTables != size) throw new InvalidOperationException($"expected {size} tables, got {oursTables} / {baseTables}");

            Console.WriteLine($"| {size,6} | {oursMs,9:F1} | {oursStatements,17} | {baseMs,23:F1} | {baseStatements,21} | {baseMs / oursMs,14:F1}x |");
        }

        async Task<(double Ms, int Statements, int Tables)> MeasureAsync(Func<Task<int>> run)
        {
            await run();
            var times = new List<double>();
            int count = 0, tables = 0;
            for (var i = 0; i < Runs; i++)
            {
                statements.Clear();
                var stopwatch = Stopwatch.StartNew();
                tables = await run();
                times.Add(stopwatch.Elapsed.TotalMilliseconds);
                count = statements.Count;
            }

            times.Sort();
            return (times[times.Count / 2], count, tables);
        }

        // What a straightforward implementation does: list the tables, then ask about each one.
        static async Task<int> PerTableBaselineAsync(string connectionString)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            var tables = new List<string>();
            await using (var list = new NpgsqlCommand("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name", connection))
            await using (var reader = await list.ExecuteReaderAsync())
                while (await reader.ReadAsync()) tables.Add(reader.GetString(0));

            foreach (var table in tables)
            {
                await using var columns = new NpgsqlCommand(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = @t ORDER BY ordinal_position", connection);
                columns.Parameters.AddWithValue("t", table);
                await using (var reader = await columns.ExecuteReaderAsync())
                    while (await reader.ReadAsync()) { }

                await using var keys = new NpgsqlCommand("""
            SELECT kcu.column_name FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
            WHERE tc.table_schema = 'public' AND tc.table_name = @t AND tc.constraint_type = 'PRIMARY KEY'
            """, connection);
                keys.Parameters.AddWithValue("t", table);
                await using (var reader = await keys.ExecuteReaderAsync())
                    while (await reader.ReadAsync()) { }
            }

            return tables.Count;
        }

        Task<string> CreateDatabaseAsync(int tables) =>
            BenchDatabases.CreateAsync(cluster, $"bench_{tables}", tables, "id int PRIMARY KEY, updated_at timestamptz, amount numeric, note text");

    }
}

internal sealed class AllowPrivate : IOptionsMonitor<NetworkOptions>
{
    public NetworkOptions CurrentValue { get; } = new() { AllowPrivateHosts = true };
    public NetworkOptions Get(string? name) => CurrentValue;
    public IDisposable? OnChange(Action<NetworkOptions, string?> listener) => null;
}
