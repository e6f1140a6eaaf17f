using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Npgsql;
using static ExternalData.EventSourced.SourceTypes.Postgres.Cdc.PostgresCdcPrerequisites;

namespace ExternalData.EventSourced.SourceTypes.Postgres.Cdc;

/// <summary>
/// The slot and publication on the customer's database (ref §10.3): created, adopted, changed, dropped, read.
/// A slot is created over an ordinary connection with pg_create_logical_replication_slot, which returns the
/// consistent point the first snapshot starts from.
/// </summary>
internal static class PostgresReplication
{
    public const string SelfManagedPublication = "posthog_pub";

    /// <summary>PostHog names a source's slot <c>posthog_&lt;12 hex&gt;</c> from its id. PostHog's ids are random
    /// (v4) so it takes the first 12; ours are v7, whose first 12 hex digits are the creation millisecond, so we take
    /// the last 12, which are random (ADR 0025).</summary>
    public static string DefaultSlot(Guid sourceId) => $"posthog_{sourceId.ToString("N")[^12..]}";

    public static string DefaultPublication(Guid sourceId, string mode) =>
        mode == CdcModes.Managed ? $"posthog_pub_{sourceId.ToString("N")[^12..]}" : SelfManagedPublication;

    public static (string Schema, string Table) Split(string name, string? schemaHint)
    {
        if (!string.IsNullOrEmpty(schemaHint)) return (schemaHint, name.StartsWith(schemaHint + ".", StringComparison.Ordinal) ? name[(schemaHint.Length + 1)..] : name);
        var dot = name.IndexOf('.');
        return dot > 0 ? (name[..dot], name[(dot + 1)..]) : ("public", name);
    }

    public static async Task<CdcOutcome<CdcProvisioning>> ProvisionAsync(NpgsqlConnection connection, CdcResources resources, IReadOnlyList<(string Schema, string Table)> tables, CancellationToken ct)
    {
        var slotExists = await SlotExistsAsync(connection, resources.SlotName, ct);
        var publicationExists = await PublicationExistsAsync(connection, resources.PublicationName, ct);
        var managed = resources.Mode == CdcModes.Managed;

        if (slotExists && (!managed || !resources.DefaultNames))
            return CdcOutcome<CdcProvisioning>.Refused($"A replication slot named '{resources.SlotName}' already exists on your database.");
        if (managed && publicationExists && !resources.DefaultNames)
            return CdcOutcome<CdcProvisioning>.Refused($"A publication named '{resources.PublicationName}' already exists on your database.");
        if (!managed && !publicationExists)
            return CdcOutcome<CdcProvisioning>.Refused($"Publication '{resources.PublicationName}' does not exist. Run the CREATE PUBLICATION statement we showed you, then retry.");

        var publicationCreated = false;
        var published = new List<string>();
        try
        {
            if (managed)
            {
                if (!publicationExists)
                {
                    await ExecuteAsync(connection, $"CREATE PUBLICATION {Quote(resources.PublicationName)} WITH (publish_via_partition_root = true)", ct);
                    publicationCreated = true;
                }

                published.AddRange((await AddTablesAsync(connection, resources.PublicationName, tables, ct)));
            }

            string consistentPoint;
            if (slotExists)
            {
                consistentPoint = await ScalarAsync(connection, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", resources.SlotName, ct) ?? "0/0";
            }
            else
            {
                try
                {
                    consistentPoint = await ScalarAsync(connection, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", resources.SlotName, ct) ?? "0/0";
                }
                catch (PostgresException e)
                {
                    if (publicationCreated) await ExecuteAsync(connection, $"DROP PUBLICATION IF EXISTS {Quote(resources.PublicationName)}", CancellationToken.None);
                    return CdcOutcome<CdcProvisioning>.Refused(SlotFailure(e));
                }
            }

            return CdcOutcome<CdcProvisioning>.Ok(new CdcProvisioning(resources.Mode, resources.SlotName, resources.PublicationName, consistentPoint,
                SlotCreated: !slotExists, PublicationCreated: publicationCreated, published));
        }
        catch (PostgresException e)
        {
            if (publicationCreated) await ExecuteAsync(connection, $"DROP PUBLICATION IF EXISTS {Quote(resources.PublicationName)}", CancellationToken.None);
            return CdcOutcome<CdcProvisioning>.Refused($"Failed to set up the publication: {e.MessageText}");
        }
    }

    private static string SlotFailure(PostgresException e) => e.SqlState switch
    {
        PostgresErrorCodes.InsufficientPrivilege or PostgresErrorCodes.ObjectNotInPrerequisiteState when e.MessageText.Contains("replication", StringComparison.OrdinalIgnoreCase) =>
            $"Failed to create replication slot: {e.MessageText}. The user needs the REPLICATION privilege: ALTER ROLE <user> WITH REPLICATION;",
        PostgresErrorCodes.ReadOnlySqlTransaction =>
            $"Failed to create replication slot: {e.MessageText}. This looks like a read-only replica: point the source at the primary.",
        _ => $"Failed to create replication slot: {e.MessageText}",
    };

    public static async Task<IReadOnlyList<string>> AddTablesAsync(NpgsqlConnection connection, string publication, IReadOnlyList<(string Schema, string Table)> tables, CancellationToken ct)
    {
        var present = await PublishedAsync(connection, publication, ct);
        var added = new List<string>();
        foreach (var (schema, table) in tables)
        {
            if (present.Contains($"{schema}.{table}")) continue;
            await ExecuteAsync(connection, $"ALTER PUBLICATION {Quote(publication)} ADD TABLE {Quote(schema)}.{Quote(table)}", ct);
            added.Add($"{schema}.{table}");
        }

        return added;
    }

    public static async Task<IReadOnlyList<string>> DropTablesAsync(NpgsqlConnection connection, string publication, IReadOnlyList<(string Schema, string Table)> tables, CancellationToken ct)
    {
        var present = await PublishedAsync(connection, publication, ct);
        var dropped = new List<string>();
        foreach (var (schema, table) in tables)
        {
            if (!present.Contains($"{schema}.{table}")) continue;
            await ExecuteAsync(connection, $"ALTER PUBLICATION {Quote(publication)} DROP TABLE {Quote(schema)}.{Quote(table)}", ct);
            dropped.Add($"{schema}.{table}");
        }

        return dropped;
    }

    /// <summary>Drops the slot (ending a consumer still attached to it) and, when asked, the publication.</summary>
    public static async Task<CdcRemoval> RemoveAsync(NpgsqlConnection connection, string? slot, string? publication, CancellationToken ct)
    {
        var slotExists = slot is not null && await SlotExistsAsync(connection, slot, ct);
        if (slotExists)
        {
            // The consumer streaming from it is ended first; its backend takes a moment to let go of the slot.
            for (var attempt = 0; ; attempt++)
            {
                await ExecuteAsync(connection, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", ct, slot);
                try
                {
                    await ExecuteAsync(connection, "SELECT pg_drop_replication_slot($1)", ct, slot);
                    break;
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ObjectInUse && attempt < 50)
                {
                    await Task.Delay(100, ct);
                }
            }
        }

        var publicationExists = publication is not null && await PublicationExistsAsync(connection, publication, ct);
        if (publicationExists) await ExecuteAsync(connection, $"DROP PUBLICATION IF EXISTS {Quote(publication!)}", ct);
        return new CdcRemoval(slotExists, slot is not null && !slotExists, publicationExists, publication is not null && !publicationExists);
    }

    public static string RemovalSql(string? slot, string? publication) =>
        string.Join(" ", new[]
        {
            slot is null ? null : $"SELECT pg_drop_replication_slot('{slot}');",
            publication is null ? null : $"DROP PUBLICATION IF EXISTS {Quote(publication)};",
        }.Where(s => s is not null));

    public static async Task<CdcHealth> ReadHealthAsync(NpgsqlConnection connection, string slot, string publication, CancellationToken ct)
    {
        var version = int.Parse(await ScalarAsync(connection, "SHOW server_version_num", null, ct) ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        var invalidation = version >= 170000 ? "invalidation_reason" : version >= 160000 ? "CASE WHEN conflicting THEN 'conflicting' END" : "NULL::text";
        var publicationExists = await PublicationExistsAsync(connection, publication, ct);
        var published = (await PublishedAsync(connection, publication, ct)).Order(StringComparer.Ordinal).ToList();
        await using var command = new NpgsqlCommand($"""
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
                   wal_status, safe_wal_size, active, active_pid, {invalidation}
            FROM pg_replication_slots WHERE slot_name = $1
            """, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = slot });
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return new CdcHealth(false, publicationExists, null, null, null, null, null, null, null, published);
        return new CdcHealth(true, publicationExists,
            LagBytes: await ValueOrNull<long>(reader, 0, ct),
            RetainedWalBytes: await ValueOrNull<long>(reader, 1, ct),
            WalStatus: await TextOrNull(reader, 2, ct),
            SafeWalSize: await ValueOrNull<long>(reader, 3, ct),
            Active: reader.GetBoolean(4),
            ActivePid: await ValueOrNull<int>(reader, 5, ct),
            InvalidationReason: await TextOrNull(reader, 6, ct),
            PublishedTables: published);
    }

    private static async Task<HashSet<string>> PublishedAsync(NpgsqlConnection connection, string publication, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = publication });
        var result = new HashSet<string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) result.Add(reader.GetString(0));
        return result;
    }

    private static async Task<bool> SlotExistsAsync(NpgsqlConnection connection, string slot, CancellationToken ct) =>
        await ScalarAsync(connection, "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name = $1", slot, ct) is not null;

    private static async Task<bool> PublicationExistsAsync(NpgsqlConnection connection, string publication, CancellationToken ct) =>
        await ScalarAsync(connection, "SELECT pubname::text FROM pg_publication WHERE pubname = $1", publication, ct) is not null;

    private static async Task<string?> ScalarAsync(NpgsqlConnection connection, string sql, string? parameter, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        if (parameter is not null) command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        return (await command.ExecuteScalarAsync(ct))?.ToString();
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken ct, string? parameter = null)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        if (parameter is not null) command.Parameters.Add(new NpgsqlParameter { Value = parameter });
        await command.ExecuteNonQueryAsync(ct);
    }
}
