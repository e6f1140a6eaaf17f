using System.Globalization;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Npgsql;
using Npgsql.Replication;

namespace ExternalData.EventSourced.SourceTypes.Postgres.Cdc;

/// <summary>
/// The CDC prerequisite checks of cdc-and-stripe.md §1 (rows 1–16 and 18) over a connected session. Each check
/// reports on its own; none stops the others. The texts PostHog has for a failure (ref §10.2) are its errors; the
/// rest use our own words. Catalog columns that exist only on newer servers are chosen by server_version_num.
/// </summary>
internal sealed class PostgresCdcPrerequisites(NpgsqlConnection connection, NpgsqlConnectionStringBuilder settings, CdcCheckRequest request, string? schemaHint)
{
    private readonly List<CdcCheck> _checks = [];
    private readonly List<string> _errors = [];
    private readonly string _user = settings.Username ?? "";
    private int _version;

    public static CdcCheckReport Unreachable(SourceCheck problem, bool hostRefused)
    {
        var checks = new List<CdcCheck>
        {
            hostRefused
                ? new CdcCheck("host.allowed", CdcCheckStatus.Fail, problem.Message, "a public host, or one on the allowlist", problem.Message!,
                    "Use the database's public endpoint, or connect through an SSH tunnel.")
                : Pass("host.allowed", "allowed", "a public host, or one on the allowlist", "The host is allowed."),
        };
        if (!hostRefused)
            checks.Add(new CdcCheck("connect.sql", CdcCheckStatus.Fail, problem.Message, "a connection", problem.Message!, "Check the host, port, database, user and password."));
        var reason = hostRefused ? "Skipped: the host is not allowed." : "Skipped: could not connect to the database.";
        checks.AddRange(AllIds.Skip(checks.Count).Select(id => Skip(id, reason)));
        return new CdcCheckReport(checks, [problem.Message!], problem);
    }

    public static readonly string[] AllIds =
    [
        "host.allowed", "connect.sql", "connect.replication", "server.version", "server.wal_level", "server.max_wal_senders",
        "server.max_replication_slots", "role.replication", "role.select", "table.primary_key", "table.replica_identity",
        "table.ownership", "publication.can_create", "publication.exists", "publication.tables", "slot.state", "server.is_standby",
        "wal.retention_cap", "txn.long_running", "rls.enabled",
    ];

    public async Task<CdcCheckReport> RunAsync(CancellationToken ct)
    {
        _checks.Add(Pass("host.allowed", "allowed", "a public host, or one on the allowlist", "The host is allowed."));
        _checks.Add(Pass("connect.sql", "connected", "a connection", "Connected to the database."));
        await Run("connect.replication", ReplicationConnectionAsync, ct);
        await Run("server.version", VersionAsync, ct);
        await Run("server.wal_level", WalLevelAsync, ct);
        await Run("server.max_wal_senders", WalSendersAsync, ct);
        await Run("server.max_replication_slots", SlotCapacityAsync, ct);
        await Run("role.replication", ReplicationRightAsync, ct);

        var tables = await ResolveTablesAsync(ct);
        await Run("role.select", c => SelectAsync(tables, c), ct);
        await Run("table.primary_key", c => PrimaryKeysAsync(tables, c), ct);
        await Run("table.replica_identity", c => ReplicaIdentityAsync(tables, c), ct);
        await Run("table.ownership", c => OwnershipAsync(tables, c), ct);
        await Run("publication.can_create", CanCreatePublicationAsync, ct);
        var publicationExists = await PublicationExistsAsync(ct);
        await Run("publication.tables", c => PublicationTablesAsync(tables, publicationExists, c), ct);
        await Run("slot.state", SlotStateAsync, ct);
        await Run("server.is_standby", StandbyAsync, ct);
        await Run("wal.retention_cap", RetentionCapAsync, ct);
        await Run("txn.long_running", LongTransactionsAsync, ct);
        await Run("rls.enabled", c => RowSecurityAsync(tables, c), ct);
        return new CdcCheckReport(_checks, _errors, null);
    }

    private bool Managed => request.Mode == CdcModes.Managed;
    private string PublicationName => request.PublicationName ?? (Managed ? null! : PostgresReplication.SelfManagedPublication);

    private async Task Run(string id, Func<CancellationToken, Task<CdcCheck>> check, CancellationToken ct)
    {
        CdcCheck result;
        try
        {
            result = await check(ct);
        }
        catch (PostgresException e)
        {
            result = Skip(id, $"Skipped: the check could not run ({e.MessageText}).");
        }

        _checks.Add(result);
    }

    private CdcCheck Fail(string id, string observed, string expected, string message, string remediation, params string[] postHogErrors)
    {
        _errors.AddRange(postHogErrors.Length > 0 ? postHogErrors : [message]);
        return new CdcCheck(id, CdcCheckStatus.Fail, observed, expected, message, remediation);
    }

    private static CdcCheck Pass(string id, string observed, string expected, string message) => new(id, CdcCheckStatus.Pass, observed, expected, message, null);

    private static CdcCheck Warn(string id, string observed, string expected, string message, string remediation) =>
        new(id, CdcCheckStatus.Warn, observed, expected, message, remediation);

    private static CdcCheck Skip(string id, string reason) => new(id, CdcCheckStatus.Skip, null, null, reason, null);

    private const string NoTables = "Skipped: no tables were named; table checks run for the tables you choose.";

    private async Task<CdcCheck> ReplicationConnectionAsync(CancellationToken ct)
    {
        const string id = "connect.replication", expected = "IDENTIFY_SYSTEM succeeds over a replication connection";
        try
        {
            await using var replication = new LogicalReplicationConnection(settings.ConnectionString);
            await replication.Open(ct);
            var system = await replication.IdentifySystem(ct);
            return Pass(id, $"system {system.SystemId}, timeline {system.Timeline}", expected, "A replication connection works.");
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            var observed = e is PostgresException pg ? pg.MessageText : e.Message;
            var roleMissing = e is PostgresException { SqlState: PostgresErrorCodes.InsufficientPrivilege };
            return Fail(id, observed, expected,
                $"A replication connection (replication=database) was refused: {observed}",
                roleMissing
                    ? $"ALTER ROLE {Quote(_user)} WITH REPLICATION;"
                    : "Free a WAL sender (or raise max_wal_senders and restart), and make sure pg_hba.conf lets this user connect to this database " +
                      $"(a logical replication connection matches the database's lines, e.g. `host {settings.Database} {_user} <this service's address>/32 scram-sha-256`), then SELECT pg_reload_conf();");
        }
    }

    private async Task<CdcCheck> VersionAsync(CancellationToken ct)
    {
        _version = int.Parse(await ScalarAsync("SHOW server_version_num", ct) ?? "0", CultureInfo.InvariantCulture);
        var major = _version / 10000;
        return _version >= 130000
            ? Pass("server.version", major.ToString(CultureInfo.InvariantCulture), ">= 13", $"PostgreSQL {major} supports CDC.")
            : Fail("server.version", major.ToString(CultureInfo.InvariantCulture), ">= 13",
                $"PostgreSQL 13 or later is required for CDC. Your server is running version {major}.", "Upgrade the server to PostgreSQL 13 or later.");
    }

    private async Task<CdcCheck> WalLevelAsync(CancellationToken ct)
    {
        var level = await ScalarAsync("SELECT setting FROM pg_settings WHERE name = 'wal_level'", ct);
        if (level is null)
        {
            return Fail("server.wal_level", "not exposed", "logical",
                "The server does not expose wal_level: this looks like a connection pooler or a database that cannot do logical replication. Connect to the database directly, or use Incremental sync.",
                "Connect directly to the primary (not through a pooler in transaction mode).");
        }

        return level == "logical"
            ? Pass("server.wal_level", level, "logical", "wal_level is logical.")
            : Fail("server.wal_level", level, "logical",
                $"wal_level must be set to 'logical' (currently '{level}'). This requires a PostgreSQL server restart after changing the configuration.",
                "ALTER SYSTEM SET wal_level = logical; then restart the server (Amazon RDS / Aurora: set rds.logical_replication = 1 in the parameter group and reboot).");
    }

    private async Task<CdcCheck> WalSendersAsync(CancellationToken ct)
    {
        var max = int.Parse(await ScalarAsync("SHOW max_wal_senders", ct) ?? "0", CultureInfo.InvariantCulture);
        var used = int.Parse(await ScalarAsync("SELECT count(*)::text FROM pg_stat_replication", ct) ?? "0", CultureInfo.InvariantCulture);
        var observed = $"{used}/{max} in use";
        return max - used >= 1
            ? Pass("server.max_wal_senders", observed, "at least 1 free", "A WAL sender is free for the replication stream.")
            : Fail("server.max_wal_senders", observed, "at least 1 free",
                $"No WAL sender is free ({used}/{max} in use): the replication stream could not start.",
                $"ALTER SYSTEM SET max_wal_senders = {max + 2}; then restart the server.");
    }

    private async Task<CdcCheck> SlotCapacityAsync(CancellationToken ct)
    {
        var max = int.Parse(await ScalarAsync("SHOW max_replication_slots", ct) ?? "0", CultureInfo.InvariantCulture);
        var used = int.Parse(await ScalarAsync("SELECT count(*)::text FROM pg_replication_slots", ct) ?? "0", CultureInfo.InvariantCulture);
        var observed = $"{used}/{max} in use";
        return used < max
            ? Pass("server.max_replication_slots", observed, "at least 1 free", "A replication slot is free.")
            : Fail("server.max_replication_slots", observed, "at least 1 free",
                $"No replication slot capacity available ({used}/{max} slots in use). Increase max_replication_slots in your PostgreSQL configuration.",
                $"Drop an unused slot with SELECT pg_drop_replication_slot('<slot>'); or ALTER SYSTEM SET max_replication_slots = {max + 2}; then restart the server.");
    }

    private async Task<CdcCheck> ReplicationRightAsync(CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT r.rolsuper, r.rolreplication,
                   EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname IN ('rds_replication', 'rds_superuser') AND pg_has_role(r.oid, g.oid, 'MEMBER'))
            FROM pg_roles r WHERE r.rolname = current_user
            """, connection);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var (super, replication, rds) = (reader.GetBoolean(0), reader.GetBoolean(1), reader.GetBoolean(2));
        var observed = super ? "superuser" : replication ? "REPLICATION" : rds ? "member of rds_replication" : "no REPLICATION";
        return super || replication || rds
            ? Pass("role.replication", observed, "REPLICATION, superuser or rds_replication", $"The user '{_user}' may replicate.")
            : Fail("role.replication", observed, "REPLICATION, superuser or rds_replication",
                $"The user '{_user}' needs the REPLICATION privilege for CDC. Grant it with ALTER ROLE {_user} WITH REPLICATION; (on Amazon RDS: GRANT rds_replication TO {_user};), or use Incremental sync instead.",
                $"ALTER ROLE {Quote(_user)} WITH REPLICATION;");
    }

    /// <summary>Bare names get the configured schema; with none, <c>schema.table</c> is split and bare means public.</summary>
    private async Task<IReadOnlyList<TableFacts>> ResolveTablesAsync(CancellationToken ct)
    {
        if (request.Tables is not { Count: > 0 }) return [];
        var names = request.Tables.Select(t => PostgresReplication.Split(t, schemaHint)).Distinct().ToList();
        await using var command = new NpgsqlCommand("""
            SELECT n.nspname, c.relname, c.relreplident::text, c.relrowsecurity,
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                   has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'),
                   pg_has_role(current_user, c.relowner, 'USAGE'),
                   pg_get_userbyid(c.relowner)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            """, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = names.Select(n => n.Schema).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = names.Select(n => n.Table).ToArray() });
        var found = new Dictionary<(string, string), TableFacts>();
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var key = (reader.GetString(0), reader.GetString(1));
                found[key] = new TableFacts(key.Item1, key.Item2, true, reader.GetString(2), reader.GetBoolean(3), reader.GetBoolean(4),
                    reader.GetBoolean(5), reader.GetBoolean(6), reader.GetString(7));
            }
        }

        return names.Select(n => found.GetValueOrDefault((n.Schema, n.Table)) ?? new TableFacts(n.Schema, n.Table, false, "", false, false, false, false, "")).ToList();
    }

    private sealed record TableFacts(string Schema, string Table, bool Exists, string ReplicaIdentity, bool RowSecurity, bool HasPrimaryKey, bool CanSelect, bool Owns, string Owner)
    {
        public string Name => $"{Schema}.{Table}";
        public string Sql => $"{Quote(Schema)}.{Quote(Table)}";
    }

    private Task<CdcCheck> SelectAsync(IReadOnlyList<TableFacts> tables, CancellationToken ct)
    {
        const string id = "role.select", expected = "SELECT on every table";
        if (tables.Count == 0) return Task.FromResult(Skip(id, NoTables));
        var missing = tables.Where(t => !t.Exists).ToList();
        var denied = tables.Where(t => t.Exists && !t.CanSelect).ToList();
        if (missing.Count == 0 && denied.Count == 0) return Task.FromResult(Pass(id, $"{tables.Count} readable", expected, "The user may read every table."));
        var observed = string.Join("; ", missing.Select(t => $"{t.Name} missing").Concat(denied.Select(t => $"no SELECT on {t.Name}")));
        var remediation = string.Join(" ", denied.Select(t => $"GRANT USAGE ON SCHEMA {Quote(t.Schema)} TO {Quote(_user)}; GRANT SELECT ON {t.Sql} TO {Quote(_user)};"));
        return Task.FromResult(Fail(id, observed, expected, $"The user cannot read every table: {observed}.",
            remediation.Length > 0 ? remediation : "Check the table names.",
            [.. missing.Select(t => $"Table '{t.Name}' does not exist."), .. denied.Select(t => $"No SELECT permission on table '{t.Name}'.")]));
    }

    private Task<CdcCheck> PrimaryKeysAsync(IReadOnlyList<TableFacts> tables, CancellationToken ct)
    {
        const string id = "table.primary_key", expected = "a primary key on every table";
        if (tables.Count == 0) return Task.FromResult(Skip(id, NoTables));
        var existing = tables.Where(t => t.Exists).ToList();
        if (existing.Count == 0) return Task.FromResult(Skip(id, "Skipped: none of the tables exists."));
        var without = existing.Where(t => !t.HasPrimaryKey).ToList();
        if (without.Count == 0) return Task.FromResult(Pass(id, $"{existing.Count} with a primary key", expected, "Every table has a primary key."));
        return Task.FromResult(Fail(id, "no primary key: " + string.Join(", ", without.Select(t => t.Name)), expected,
            $"CDC requires a primary key on each table; these have none: {string.Join(", ", without.Select(t => t.Name))}.",
            string.Join(" ", without.Select(t => $"ALTER TABLE {t.Sql} ADD PRIMARY KEY (<key columns>);")),
            [.. without.Select(t => $"Table '{t.Name}' has no primary key. CDC requires a primary key on each table.")]));
    }

    private Task<CdcCheck> ReplicaIdentityAsync(IReadOnlyList<TableFacts> tables, CancellationToken ct)
    {
        const string id = "table.replica_identity", expected = "DEFAULT with a primary key, FULL or USING INDEX; never NOTHING";
        if (tables.Count == 0) return Task.FromResult(Skip(id, NoTables));
        var existing = tables.Where(t => t.Exists).ToList();
        if (existing.Count == 0) return Task.FromResult(Skip(id, "Skipped: none of the tables exists."));
        var bad = existing.Where(t => t.ReplicaIdentity == "n" || t.ReplicaIdentity == "d" && !t.HasPrimaryKey).ToList();
        var observed = string.Join(", ", existing.Select(t => $"{t.Name}={IdentityName(t.ReplicaIdentity)}"));
        if (bad.Count == 0) return Task.FromResult(Pass(id, observed, expected, "Every table identifies its changed rows."));
        return Task.FromResult(Fail(id, observed, expected,
            $"Updates and deletes of these tables cannot be replicated (no replica identity): {string.Join(", ", bad.Select(t => t.Name))}.",
            string.Join(" ", bad.Select(t => t.HasPrimaryKey ? $"ALTER TABLE {t.Sql} REPLICA IDENTITY DEFAULT;" : $"ALTER TABLE {t.Sql} REPLICA IDENTITY FULL;"))));
    }

    private static string IdentityName(string code) => code switch { "d" => "default", "f" => "full", "i" => "index", "n" => "nothing", _ => code };

    private Task<CdcCheck> OwnershipAsync(IReadOnlyList<TableFacts> tables, CancellationToken ct)
    {
        const string id = "table.ownership", expected = "the user owns every table (or is a member of its owner)";
        if (!Managed) return Task.FromResult(Skip(id, "Skipped: in self-managed mode your DBA adds the tables to the publication."));
        if (tables.Count == 0) return Task.FromResult(Skip(id, NoTables));
        var notOwned = tables.Where(t => t.Exists && !t.Owns).ToList();
        if (notOwned.Count == 0) return Task.FromResult(Pass(id, "owned", expected, "The user may add every table to a publication."));
        return Task.FromResult(Fail(id, string.Join(", ", notOwned.Select(t => $"{t.Name} owned by {t.Owner}")), expected,
            $"Only a table's owner can add it to a publication; the user '{_user}' does not own: {string.Join(", ", notOwned.Select(t => t.Name))}.",
            string.Join(" ", notOwned.Select(t => $"ALTER TABLE {t.Sql} OWNER TO {Quote(_user)};")),
            [.. notOwned.Select(t => $"Table '{t.Name}' is owned by '{t.Owner}': only the owner can add it to a publication. Run ALTER TABLE {t.Name} OWNER TO {_user}; or use the self-managed mode.")]));
    }

    private async Task<CdcCheck> CanCreatePublicationAsync(CancellationToken ct)
    {
        const string id = "publication.can_create", expected = "CREATE PUBLICATION works";
        if (!Managed) return Skip(id, "Skipped: in self-managed mode the publication is yours.");
        await using var transaction = await connection.BeginTransactionAsync(ct);
        try
        {
            await using var probe = new NpgsqlCommand($"CREATE PUBLICATION {Quote("edcheck_" + Guid.NewGuid().ToString("N")[..12])}", connection, transaction);
            await probe.ExecuteNonQueryAsync(ct);
            return Pass(id, "works", expected, "The user may create publications.");
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            return Fail(id, e.MessageText, expected, $"The user '{_user}' cannot create publications in this database.",
                $"GRANT CREATE ON DATABASE {Quote(settings.Database ?? "")} TO {Quote(_user)};");
        }
        finally
        {
            await transaction.RollbackAsync(CancellationToken.None);
        }
    }

    private async Task<bool> PublicationExistsAsync(CancellationToken ct)
    {
        const string id = "publication.exists";
        if (Managed)
        {
            if (request.PublicationName is null)
            {
                _checks.Add(Skip(id, "Skipped: the publication is created when CDC is turned on."));
                return false;
            }

            var taken = await ExistsAsync("SELECT 1 FROM pg_publication WHERE pubname = $1", request.PublicationName, ct);
            _checks.Add(taken
                ? Fail(id, "exists", "absent (it is created when CDC is turned on)", $"A publication named '{request.PublicationName}' already exists on your database.",
                    $"Choose another cdc_publication_name, or DROP PUBLICATION {Quote(request.PublicationName)}; if nothing uses it.")
                : Pass(id, "absent", "absent (it is created when CDC is turned on)", $"The publication '{request.PublicationName}' will be created."));
            return taken;
        }

        var name = PublicationName;
        var exists = await ExistsAsync("SELECT 1 FROM pg_publication WHERE pubname = $1", name, ct);
        _checks.Add(exists
            ? Pass(id, "exists", "exists", $"The publication '{name}' exists.")
            : Fail(id, "missing", "exists", $"Publication '{name}' does not exist. Create it with: CREATE PUBLICATION {name} FOR TABLE ...;",
                $"CREATE PUBLICATION {Quote(name)} FOR TABLE {TableList(request.Tables)};"));
        return exists;
    }

    private string TableList(IReadOnlyList<string>? tables) =>
        tables is { Count: > 0 } ? string.Join(", ", tables.Select(t => PostgresReplication.Split(t, schemaHint)).Select(t => $"{Quote(t.Schema)}.{Quote(t.Table)}")) : "<your tables>";

    private async Task<CdcCheck> PublicationTablesAsync(IReadOnlyList<TableFacts> tables, bool publicationExists, CancellationToken ct)
    {
        const string id = "publication.tables", expected = "the publication covers every table and publishes inserts, updates and deletes";
        if (Managed) return Skip(id, "Skipped: in managed mode tables are added as you enable them.");
        if (!publicationExists) return Skip(id, "Skipped: the publication does not exist.");
        if (tables.Count == 0) return Skip(id, NoTables);

        await using var command = new NpgsqlCommand("""
            SELECT p.puballtables, p.pubinsert AND p.pubupdate AND p.pubdelete,
                   coalesce((SELECT array_agg(t.schemaname || '.' || t.tablename) FROM pg_publication_tables t WHERE t.pubname = p.pubname), '{}')
            FROM pg_publication p WHERE p.pubname = $1
            """, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = PublicationName });
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var (all, everyChange, published) = (reader.GetBoolean(0), reader.GetBoolean(1), (await reader.GetFieldValueAsync<string[]>(2, ct)).ToHashSet());
        var missing = tables.Where(t => t.Exists && !all && !published.Contains(t.Name)).ToList();
        if (missing.Count == 0 && everyChange) return Pass(id, all ? "FOR ALL TABLES" : $"{tables.Count} covered", expected, "The publication covers every table.");
        var remediation = new List<string>();
        if (missing.Count > 0) remediation.Add($"ALTER PUBLICATION {Quote(PublicationName)} ADD TABLE {string.Join(", ", missing.Select(t => t.Sql))};");
        if (!everyChange) remediation.Add($"ALTER PUBLICATION {Quote(PublicationName)} SET (publish = 'insert, update, delete');");
        var observed = missing.Count > 0 ? "missing: " + string.Join(", ", missing.Select(t => t.Name)) : "does not publish every kind of change";
        return Fail(id, observed, expected, $"The publication '{PublicationName}' does not cover what CDC needs ({observed}).", string.Join(" ", remediation));
    }

    private async Task<CdcCheck> SlotStateAsync(CancellationToken ct)
    {
        const string id = "slot.state", expected = "absent, or pgoutput in this database, not active elsewhere, WAL not lost";
        if (request.SlotName is null) return Skip(id, "Skipped: no slot name was given; the slot is created when CDC is turned on.");
        var extra = _version >= 170000 ? ", s.conflicting::text, s.invalidation_reason" : _version >= 160000 ? ", s.conflicting::text, NULL" : ", NULL, NULL";
        await using var command = new NpgsqlCommand($"""
            SELECT s.plugin, s.database, s.active, s.active_pid, s.wal_status{extra}
            FROM pg_replication_slots s WHERE s.slot_name = $1
            """, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = request.SlotName });
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return Pass(id, "absent", expected, $"The slot '{request.SlotName}' will be created.");

        var plugin = await TextOrNull(reader, 0, ct) ?? "physical";
        var database = await TextOrNull(reader, 1, ct);
        var active = reader.GetBoolean(2);
        var pid = await ValueOrNull<int>(reader, 3, ct);
        var walStatus = await TextOrNull(reader, 4, ct);
        var conflicting = await TextOrNull(reader, 5, ct);
        var invalidation = await TextOrNull(reader, 6, ct);
        var observed = $"plugin {plugin}, database {database ?? "none"}, {(active ? $"active (pid {pid})" : "inactive")}, wal_status {walStatus ?? "unknown"}"
                       + (invalidation is null ? "" : $", invalidated ({invalidation})");

        var problems = new List<string>();
        var fixes = new List<string>();
        var recreate = $"SELECT pg_drop_replication_slot('{request.SlotName}'); then let CDC create it again (or SELECT pg_create_logical_replication_slot('{request.SlotName}', 'pgoutput'); in database {settings.Database})";
        if (plugin != "pgoutput") { problems.Add($"it uses the plugin '{plugin}', not pgoutput"); fixes.Add(recreate); }
        if (database != settings.Database) { problems.Add($"it belongs to the database '{database ?? "none"}', not '{settings.Database}'"); fixes.Add(recreate); }
        if (active) { problems.Add($"another connection is consuming it (pid {pid})"); fixes.Add($"Stop the other consumer, or SELECT pg_terminate_backend({pid});"); }
        if (walStatus == "lost" || conflicting == "true" || invalidation is not null) { problems.Add("the WAL it needs is gone (the slot is invalidated)"); fixes.Add(recreate); }
        if (problems.Count == 0) return Pass(id, observed, expected, $"The slot '{request.SlotName}' is usable.");
        return Fail(id, observed, expected, $"The replication slot '{request.SlotName}' cannot be used: {string.Join("; ", problems)}.", string.Join(" ", fixes.Distinct()));
    }

    private async Task<CdcCheck> StandbyAsync(CancellationToken ct)
    {
        const string id = "server.is_standby", expected = "a primary, or a PostgreSQL 16+ standby with hot_standby_feedback = on";
        var standby = await ScalarAsync("SELECT pg_is_in_recovery()::text", ct) == "true";
        if (!standby) return Pass(id, "primary", expected, "The server is a primary.");
        var feedback = await ScalarAsync("SHOW hot_standby_feedback", ct);
        if (_version >= 160000 && feedback == "on") return Pass(id, "standby, hot_standby_feedback on", expected, "Logical decoding works on this standby.");
        return Fail(id, $"standby (version {_version / 10000}, hot_standby_feedback {feedback})", expected,
            "The server is a read replica: logical replication needs the primary, or a PostgreSQL 16+ standby with hot_standby_feedback on.",
            _version >= 160000 ? "ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf(); (or point at the primary)" : "Point the source at the primary.");
    }

    private async Task<CdcCheck> RetentionCapAsync(CancellationToken ct)
    {
        const string id = "wal.retention_cap", expected = "max_slot_wal_keep_size set, at least 1024 MB";
        var setting = long.Parse(await ScalarAsync("SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size'", ct) ?? "-1", CultureInfo.InvariantCulture);
        if (setting < 0)
        {
            return Warn(id, "-1 (unbounded)", expected,
                "max_slot_wal_keep_size is unbounded: if CDC stops consuming, the slot keeps WAL until the disk fills.",
                "ALTER SYSTEM SET max_slot_wal_keep_size = '<peak WAL per hour × the outage you want to survive, e.g. 50GB>'; SELECT pg_reload_conf();");
        }

        var observed = $"{setting} MB";
        return setting < 1024
            ? Warn(id, observed, expected, "max_slot_wal_keep_size is small: a short pause in consuming can invalidate the slot and force a full re-sync.",
                "ALTER SYSTEM SET max_slot_wal_keep_size = '<about two days of WAL>'; SELECT pg_reload_conf();")
            : Pass(id, observed, expected, "Retained WAL is capped.");
    }

    /// <summary>Transactions open for over 30 minutes hold back the initial snapshot and logical decoding (Estuary
    /// watches this). Only sessions this role may see are counted; without pg_read_all_stats others are hidden.</summary>
    private async Task<CdcCheck> LongTransactionsAsync(CancellationToken ct)
    {
        const string id = "txn.long_running", expected = "no transaction open for more than 30 minutes";
        var open = long.Parse(await ScalarAsync(
            "SELECT count(*)::text FROM pg_stat_activity WHERE xact_start < now() - interval '30 minutes' AND pid <> pg_backend_pid()", ct) ?? "0", CultureInfo.InvariantCulture);
        return open == 0
            ? Pass(id, "none", expected, "No long-running transaction holds back decoding.")
            : Warn(id, $"{open} open for over 30 minutes", expected,
                $"{open} transaction(s) have been open for over 30 minutes: the initial snapshot and decoding wait for them.",
                "SELECT pid, usename, xact_start, left(query, 80) FROM pg_stat_activity WHERE xact_start < now() - interval '30 minutes'; then end them (pg_terminate_backend) or let them finish.");
    }

    private Task<CdcCheck> RowSecurityAsync(IReadOnlyList<TableFacts> tables, CancellationToken ct)
    {
        const string id = "rls.enabled", expected = "no row-level security on the tables (or a BYPASSRLS role)";
        if (tables.Count == 0) return Task.FromResult(Skip(id, NoTables));
        var rls = tables.Where(t => t.Exists && t.RowSecurity).ToList();
        return Task.FromResult(rls.Count == 0
            ? Pass(id, "off", expected, "No table uses row-level security.")
            : Warn(id, "on: " + string.Join(", ", rls.Select(t => t.Name)), expected,
                $"Row-level security is on for {string.Join(", ", rls.Select(t => t.Name))}: the initial snapshot sees only the rows the user may see.",
                $"ALTER ROLE {Quote(_user)} WITH BYPASSRLS; (or accept partial data)"));
    }

    private async Task<string?> ScalarAsync(string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (await command.ExecuteScalarAsync(ct))?.ToString();
    }

    private async Task<bool> ExistsAsync(string sql, string value, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = value });
        return await command.ExecuteScalarAsync(ct) is not null;
    }

    internal static async Task<string?> TextOrNull(NpgsqlDataReader reader, int ordinal, CancellationToken ct) =>
        await reader.IsDBNullAsync(ordinal, ct) ? null : reader.GetString(ordinal);

    internal static async Task<T?> ValueOrNull<T>(NpgsqlDataReader reader, int ordinal, CancellationToken ct) where T : struct =>
        await reader.IsDBNullAsync(ordinal, ct) ? null : await reader.GetFieldValueAsync<T>(ordinal, ct);

    internal static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"") + "\"";
}
