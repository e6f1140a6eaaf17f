using System.Net.Sockets;
using Microsoft.AspNetCore.Diagnostics;
using Npgsql;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>
/// While the database is down or restarting, a request answers 503 with <c>Retry-After</c> instead of a 500: the
/// caller did nothing wrong and the same request will work shortly. Nothing was committed (the transaction never
/// reached its commit, or the commit failed and PostgreSQL rolled it back), so a retry cannot double a write.
/// The log line names the failure class only: a PostgreSQL message can quote the statement's parameters.
/// </summary>
public sealed class DatabaseUnavailableHandler(ILogger<DatabaseUnavailableHandler> logger) : IExceptionHandler
{
    public const int RetryAfterSeconds = 5;

    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken ct)
    {
        if (FindOutage(exception) is not { } cause) return false;
        logger.LogWarning("Database unavailable ({Cause}) for {Method} {Path}; answered 503", cause, context.Request.Method, context.Request.Path);
        context.Response.Headers.RetryAfter = RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await Problems.WriteAsync(context, Problems.Create(StatusCodes.Status503ServiceUnavailable, "service_unavailable", "database_unavailable",
            "The database is unavailable. Nothing was changed; retry shortly.", null));
        return true;
    }

    /// <summary>The class of outage in the exception chain (connection refused, reset, shut down, pool exhausted), or null.</summary>
    public static string? FindOutage(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                // 57P01-57P03: admin/crash shutdown, cannot connect now (starting up); class 08: connection exceptions.
                case PostgresException pg when pg.SqlState.StartsWith("57P", StringComparison.Ordinal) || pg.SqlState.StartsWith("08", StringComparison.Ordinal):
                    return $"postgres {pg.SqlState}";
                case PostgresException:
                    return null;
                case NpgsqlException { IsTransient: true }:
                    return "npgsql transient";
                case SocketException socket:
                    return $"socket {socket.SocketErrorCode}";
                case EndOfStreamException:
                    return "connection closed";
                case TimeoutException when exception is NpgsqlException || e.Source == "Npgsql":
                    return "timeout";
            }
        }

        return null;
    }
}
