using Marten;
using Npgsql;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// How many sources each project has, for the list's <c>count</c> without counting (ADR 0033). A trigger on the
/// Source documents' table keeps one row per project in the same transaction as the document's insert or delete,
/// so the count is exact under concurrent creates, and a rebuild of the Source projection (which deletes and
/// re-inserts the documents) keeps it right by the same trigger.
/// </summary>
public static class SourceCounts
{
    public const string Table = "ed_source_counts";
    private const string Trigger = "ed_count_sources";

    /// <summary>The project's count: one primary-key read, whatever the project's size.</summary>
    public static async Task<long> OfProjectAsync(IQuerySession session, CancellationToken ct)
    {
        var schema = ((DocumentStore)session.DocumentStore).Options.DatabaseSchemaName;
        var counts = await session.AdvancedSql.QueryAsync<long>(
            $"SELECT coalesce((SELECT count FROM {schema}.{Table} WHERE tenant_id = ?), 0)", ct, session.TenantId);
        return counts[0];
    }

    /// <summary>
    /// Installs the counter where it is missing: the table, the trigger function and the trigger, and the counts of
    /// the documents already there, in one transaction that holds writers of the Source table off meanwhile. A
    /// database whose trigger is in place is left as it is, so a start costs one catalogue query.
    /// </summary>
    public sealed class Setup(IDocumentStore store, ILogger<Setup> logger) : IHostedService
    {
        public async Task StartAsync(CancellationToken ct)
        {
            var schema = ((DocumentStore)store).Options.DatabaseSchemaName;
            await using var connection = store.Storage.Database.CreateConnection();
            await connection.OpenAsync(ct);
            if (await InstalledAsync(connection, schema, ct)) return;

            await using var transaction = await connection.BeginTransactionAsync(ct);
            await using var install = new NpgsqlCommand($"""
                LOCK TABLE {schema}.mt_doc_source IN SHARE ROW EXCLUSIVE MODE;
                CREATE TABLE IF NOT EXISTS {schema}.{Table} (tenant_id varchar PRIMARY KEY, count bigint NOT NULL);
                CREATE OR REPLACE FUNCTION {schema}.{Trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF TG_OP = 'INSERT' THEN
                    INSERT INTO {schema}.{Table} AS c (tenant_id, count) VALUES (NEW.tenant_id, 1)
                      ON CONFLICT (tenant_id) DO UPDATE SET count = c.count + 1;
                  ELSIF TG_OP = 'DELETE' THEN
                    UPDATE {schema}.{Table} SET count = count - 1 WHERE tenant_id = OLD.tenant_id;
                  ELSE
                    DELETE FROM {schema}.{Table};
                  END IF;
                  RETURN NULL;
                END $$;
                CREATE OR REPLACE TRIGGER {Trigger} AFTER INSERT OR DELETE ON {schema}.mt_doc_source FOR EACH ROW EXECUTE FUNCTION {schema}.{Trigger}();
                CREATE OR REPLACE TRIGGER {Trigger}_truncate AFTER TRUNCATE ON {schema}.mt_doc_source FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{Trigger}();
                DELETE FROM {schema}.{Table};
                INSERT INTO {schema}.{Table} (tenant_id, count) SELECT tenant_id, count(*) FROM {schema}.mt_doc_source GROUP BY tenant_id;
                """, connection, transaction);
            await install.ExecuteNonQueryAsync(ct);
            await transaction.CommitAsync(ct);
            logger.LogInformation("Installed the per-project source counter");
        }

        public Task StopAsync(CancellationToken ct) => Task.CompletedTask;

        private static async Task<bool> InstalledAsync(NpgsqlConnection connection, string schema, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(
                "SELECT count(*) = 2 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname IN ($2, $3)", connection);
            command.Parameters.AddWithValue($"{schema}.mt_doc_source");
            command.Parameters.AddWithValue(Trigger);
            command.Parameters.AddWithValue($"{Trigger}_truncate");
            return (bool)(await command.ExecuteScalarAsync(ct))!;
        }
    }
}
