using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using ExternalData.EventSourced.SourceTypes.Configuration;
using ExternalData.EventSourced.SourceTypes.Postgres.Cdc;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>Postgres change data capture over logical replication (pgoutput). Every connection goes through the
/// host policy first, like discovery's.</summary>
public sealed partial class PostgresSourceType : IChangeDataCapture
{
    public async Task<CdcCheckReport> CheckPrerequisitesAsync(JsonObject config, CdcCheckRequest request, CancellationToken ct)
    {
        var (settings, refused) = await ResolveAsync(config, ct);
        if (settings is null) return PostgresCdcPrerequisites.Unreachable(refused!, hostRefused: refused!.Code != "invalid_port");
        var (connection, problem) = await OpenAsync(settings, config, ct);
        if (connection is null) return PostgresCdcPrerequisites.Unreachable(problem!, hostRefused: false);
        await using (connection)
        {
            try
            {
                return await new PostgresCdcPrerequisites(connection, settings, request, SchemaHint(config)).RunAsync(ct);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                return PostgresCdcPrerequisites.Unreachable(PostgresErrors.Classify(e, config), hostRefused: false);
            }
        }
    }

    public Task<CdcOutcome<CdcProvisioning>> ProvisionAsync(JsonObject config, CdcResources resources, IReadOnlyList<string> tables, CancellationToken ct) =>
        WithConnectionAsync(config, c => PostgresReplication.ProvisionAsync(c, resources, tables.Select(t => PostgresReplication.Split(t, null)).ToList(), ct), ct);

    public Task<CdcOutcome<CdcRemoval>> ReleaseAsync(JsonObject config, CdcProvisioning provisioning, CancellationToken ct) =>
        WithConnectionAsync(config, async c =>
        {
            if (provisioning.SlotCreated || provisioning.PublicationCreated)
            {
                return CdcOutcome<CdcRemoval>.Ok(await PostgresReplication.RemoveAsync(c, provisioning.SlotCreated ? provisioning.SlotName : null,
                    provisioning.PublicationCreated ? provisioning.PublicationName : null, ct));
            }

            // Adopted resources stay; only the tables this provisioning added leave the publication.
            await PostgresReplication.DropTablesAsync(c, provisioning.PublicationName, provisioning.PublishedTables.Select(t => PostgresReplication.Split(t, null)).ToList(), ct);
            return CdcOutcome<CdcRemoval>.Ok(new CdcRemoval(false, false, false, false));
        }, ct);

    public Task<CdcOutcome<CdcPublicationChange>> ChangePublicationAsync(
        JsonObject config, string publication, IReadOnlyList<string> add, IReadOnlyList<string> drop, CancellationToken ct) =>
        WithConnectionAsync(config, async c => CdcOutcome<CdcPublicationChange>.Ok(new CdcPublicationChange(
            await PostgresReplication.AddTablesAsync(c, publication, add.Select(t => PostgresReplication.Split(t, null)).ToList(), ct),
            await PostgresReplication.DropTablesAsync(c, publication, drop.Select(t => PostgresReplication.Split(t, null)).ToList(), ct))), ct);

    public Task<CdcOutcome<CdcRemoval>> RemoveAsync(JsonObject config, CdcResources resources, bool dropSlot, bool dropPublication, CancellationToken ct) =>
        WithConnectionAsync(config, async c => CdcOutcome<CdcRemoval>.Ok(
            await PostgresReplication.RemoveAsync(c, dropSlot ? resources.SlotName : null, dropPublication ? resources.PublicationName : null, ct)), ct);

    public Task<CdcOutcome<CdcHealth>> ReadHealthAsync(JsonObject config, CdcResources resources, CancellationToken ct) =>
        WithConnectionAsync(config, async c => CdcOutcome<CdcHealth>.Ok(await PostgresReplication.ReadHealthAsync(c, resources.SlotName, resources.PublicationName, ct)), ct);

    public string RemovalSql(CdcResources resources, bool dropSlot, bool dropPublication) =>
        PostgresReplication.RemovalSql(dropSlot ? resources.SlotName : null, dropPublication ? resources.PublicationName : null);

    public string QualifiedTable(JsonObject config, string schemaName)
    {
        var (schema, table) = PostgresReplication.Split(schemaName, SchemaHint(config));
        return $"{schema}.{table}";
    }

    public string DefaultSlotName(Guid sourceId) => PostgresReplication.DefaultSlot(sourceId);

    public string DefaultPublicationName(Guid sourceId, string mode) => PostgresReplication.DefaultPublication(sourceId, mode);

    private static string? SchemaHint(JsonObject config) => ConfigSchema.Lookup(config, "schema") is { Length: > 0 } s ? s : null;

    /// <summary>Opens a connection, runs the operation; an unreachable database or a refusal comes back as a value.</summary>
    private async Task<CdcOutcome<T>> WithConnectionAsync<T>(JsonObject config, Func<NpgsqlConnection, Task<CdcOutcome<T>>> operation, CancellationToken ct) where T : class
    {
        var (connection, problem) = await OpenAsync(config, ct);
        if (connection is null) return CdcOutcome<T>.CannotConnect(problem!);
        await using (connection)
        {
            try
            {
                return await operation(connection);
            }
            catch (PostgresException e)
            {
                return CdcOutcome<T>.Refused(e.MessageText);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                return CdcOutcome<T>.CannotConnect(PostgresErrors.Classify(e, config));
            }
        }
    }
}
