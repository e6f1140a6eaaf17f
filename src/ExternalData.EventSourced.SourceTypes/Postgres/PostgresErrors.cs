using System.Net.Sockets;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

/// <summary>Maps driver failures to PostHog's friendly texts (ref §6.5, §5.23). Never echoes the raw
/// exception: it may name internals, and the caller needs a next step, not a stack trace.</summary>
internal static class PostgresErrors
{
    public static SourceCheck Classify(Exception e, JsonObject config)
    {
        var database = ConfigSchema.Lookup(config, "database");
        if (e is PostgresException pg)
        {
            return pg.SqlState switch
            {
                PostgresErrorCodes.InvalidPassword or PostgresErrorCodes.InvalidAuthorizationSpecification =>
                    SourceCheck.Failed("invalid_credentials",
                        "The database rejected the username or password. Check the user and password, and that this user may log in from outside the database server."),
                PostgresErrorCodes.InvalidCatalogName =>
                    SourceCheck.Failed("database_not_found", $"The database '{database}' does not exist on this server. Check the database name."),
                PostgresErrorCodes.InsufficientPrivilege =>
                    SourceCheck.Failed("permission_denied", "The user does not have permission to connect to this database. Grant it CONNECT on the database."),
                PostgresErrorCodes.TooManyConnections =>
                    SourceCheck.Failed("too_many_connections", "The database has no free connections right now. Try again in a moment."),
                _ => Unknown,
            };
        }

        var socket = FindInner<SocketException>(e);
        if (socket?.SocketErrorCode is SocketError.HostNotFound or SocketError.NoData)
            return SourceCheck.Failed("host_unreachable", "Could not connect to the host. Check that it's spelled correctly and reachable from the public internet.");
        if (socket?.SocketErrorCode is SocketError.ConnectionRefused)
            return SourceCheck.Failed("connection_refused", "Could not connect to the host: the connection was refused. Check the host and port, and that Postgres listens on it.");
        if (socket?.SocketErrorCode is SocketError.NetworkUnreachable or SocketError.HostUnreachable)
            return SourceCheck.Failed("host_unreachable", "Could not reach the source host. Check the host and your network access.");
        if (FindInner<TimeoutException>(e) is not null || socket?.SocketErrorCode == SocketError.TimedOut)
            return SourceCheck.Failed("connection_timeout",
                "Timed out connecting to the database. Check the host and port, and that your firewall allows connections from this service's IP addresses.");
        if (e.Message.Contains("SSL", StringComparison.OrdinalIgnoreCase))
            return SourceCheck.Failed("ssl_error", "Could not establish an SSL connection to the database. Check the server's SSL settings.");

        return Unknown;
    }

    private static SourceCheck Unknown => SourceCheck.Failed("connection_failed", "Could not connect to Postgres. Please check all connection details are valid.");

    private static T? FindInner<T>(Exception? e) where T : Exception
    {
        for (; e is not null; e = e.InnerException)
            if (e is T match) return match;
        return null;
    }
}
