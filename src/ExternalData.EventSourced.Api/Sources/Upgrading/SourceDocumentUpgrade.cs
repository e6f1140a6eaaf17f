using Marten;
using Npgsql;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// A database from before ADR 0032 kept a source in two documents: the write snapshot and a SourceDetails read model.
/// Its snapshots lack what the read model held (created_by, created_via, engine, updated_at, the webhook as shown), so
/// on the first start of this version the <see cref="Source"/> documents are rebuilt from the events, and the old table
/// is dropped once they are. It runs before the service answers, under an advisory lock, so two nodes upgrading at
/// once rebuild once. A database without the old table (every new one) costs one catalogue query.
/// </summary>
public sealed class SourceDocumentUpgrade(IDocumentStore store, ILogger<SourceDocumentUpgrade> logger) : IHostedService
{
    // Any fixed number of our own; Marten and Wolverine derive theirs from names, far from this one.
    private const long UpgradeLock = 0x45_44_53_44_30_33_32; // "EDSD032"

    public async Task StartAsync(CancellationToken ct)
    {
        var options = ((DocumentStore)store).Options;
        var schema = options.DatabaseSchemaName;
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(ct);
        if (!await OldTableExistsAsync(connection, schema, ct)) return;

        await ExecuteAsync(connection, $"SELECT pg_advisory_lock({UpgradeLock})", ct);
        try
        {
            // Another node may have finished it while this one waited for the lock.
            if (!await OldTableExistsAsync(connection, schema, ct)) return;
            logger.LogInformation("Upgrading source documents to one per source (ADR 0032): rebuilding the Source projection from the events");
            using var daemon = await store.BuildProjectionDaemonAsync();
            await daemon.RebuildProjectionAsync<Source>(TimeSpan.FromMinutes(30), ct);
            await ExecuteAsync(connection, $"DROP TABLE {schema}.mt_doc_sourcedetails CASCADE", ct);
            logger.LogInformation("Source documents upgraded; the old SourceDetails table is dropped");
        }
        finally
        {
            await ExecuteAsync(connection, $"SELECT pg_advisory_unlock({UpgradeLock})", CancellationToken.None);
        }
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;

    private static async Task<bool> OldTableExistsAsync(NpgsqlConnection connection, string schema, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT to_regclass($1) IS NOT NULL", connection);
        command.Parameters.AddWithValue($"{schema}.mt_doc_sourcedetails");
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(ct);
    }
}
