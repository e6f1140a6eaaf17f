using System.Net.Sockets;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using ExternalData.EventSourced.SourceTypes.Discovery;
using ExternalData.EventSourced.SourceTypes.Network;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>A PostgreSQL database reached with Npgsql (API.md §2, ref §6.5).</summary>
public sealed partial class PostgresSourceType(IHostPolicy hostPolicy) : ISourceType
{
    public const string TypeName = "Postgres";

    public SourceTypeDefinition Definition { get; } = new(
        Name: TypeName,
        Label: "Postgres",
        Category: "Databases",
        Caption: "Enter your Postgres credentials to automatically pull your Postgres data into the data warehouse.",
        DocsUrl: "https://posthog.com/docs/cdp/sources/postgres",
        Fields:
        [
            new InputField("connection_string", "Connection string (optional)", "text", false,
                "postgresql://user:password@localhost:5432/database", Secret: true),
            new InputField("host", "Host", "text", true, "db.example.com", "Must be reachable from the public internet."),
            new InputField("port", "Port", "number", true, "5432"),
            new InputField("database", "Database", "text", true, "postgres"),
            new InputField("user", "User", "text", true, "postgres"),
            new InputField("password", "Password", "password", true, Secret: true),
            new InputField("schema", "Schema", "text", false, "public", "Leave blank to include every schema."),
            new SshTunnelField(),
        ],
        Capabilities: new SourceCapabilities(Incremental: true, Append: true, Webhooks: false, Cdc: true, DirectQuery: true, ColumnSelection: true),
        ConnectionTargetFields: ["host", "port", "database"],
        DirectQueryEngine: "duckdb");

    public JsonObject Prepare(JsonObject input) => PostgresConnectionString.FillFieldsFrom(input);

    public async Task<SourceCheck> CheckCredentialsAsync(JsonObject config, CancellationToken ct)
    {
        var (connection, problem) = await OpenAsync(config, ct);
        if (connection is null) return problem!;
        await using (connection)
        {
            return SourceCheck.Success;
        }
    }

    public async Task<DiscoveryResult> DiscoverAsync(JsonObject config, CancellationToken ct)
    {
        var (connection, problem) = await OpenAsync(config, ct);
        if (connection is null) return new DiscoveryResult([], problem!);
        await using (connection)
        {
            try
            {
                var schema = ConfigSchema.Lookup(config, "schema");
                var user = ConfigSchema.Lookup(config, "user") ?? "";
                return DiscoveryResult.Of(await PostgresCatalog.ReadTablesAsync(connection, string.IsNullOrEmpty(schema) ? null : schema, user, ct));
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                // Connected, but reading the catalog failed: PostHog's generic discovery texts fit here.
                return new DiscoveryResult([], DiscoveryErrors.Classify(e));
            }
        }
    }

    /// <summary>Checks the host, then opens a connection pinned to the address the policy approved.</summary>
    internal async Task<(NpgsqlConnection? Connection, SourceCheck? Problem)> OpenAsync(JsonObject config, CancellationToken ct)
    {
        var (settings, problem) = await ResolveAsync(config, ct);
        if (settings is null) return (null, problem);
        return await OpenAsync(settings, config, ct);
    }

    internal static async Task<(NpgsqlConnection? Connection, SourceCheck? Problem)> OpenAsync(NpgsqlConnectionStringBuilder settings, JsonObject config, CancellationToken ct)
    {
        var connection = new NpgsqlConnection(settings.ConnectionString);
        try
        {
            await connection.OpenAsync(ct);
            return (connection, null);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or SocketException)
        {
            await connection.DisposeAsync();
            return (null, PostgresErrors.Classify(e, config));
        }
    }

    /// <summary>The connection settings for a config, after the host policy judged its host: pinned to the address
    /// the policy approved, so a DNS answer that changes between check and connect (DNS rebinding) cannot redirect
    /// us to an internal address. Every connection to a customer's database, replication ones included, uses it.</summary>
    internal async Task<(NpgsqlConnectionStringBuilder? Settings, SourceCheck? Problem)> ResolveAsync(JsonObject config, CancellationToken ct)
    {
        if (!int.TryParse(ConfigSchema.Lookup(config, "port"), out var port) || port is < 1 or > 65535)
            return (null, SourceCheck.Failed("invalid_port", "Port must be a number between 1 and 65535"));

        var host = ConfigSchema.Lookup(config, "host") ?? "";
        var verdict = await hostPolicy.CheckAsync(host, ct);
        if (!verdict.Allowed)
        {
            var message = verdict.Code == "host_internal"
                ? verdict.Message + " If your database isn't publicly reachable, connect through an SSH tunnel."
                : verdict.Message!;
            return (null, SourceCheck.Failed(verdict.Code!, message));
        }

        var builder = PostgresConnectionString.Build(config);
        builder.Host = verdict.Addresses[0].ToString();
        return (builder, null);
    }
}
