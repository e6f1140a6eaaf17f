using ExternalData.EventSourced.Sources;
using Microsoft.AspNetCore.Diagnostics;
using Npgsql;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>
/// A create that lost a race for a prefix (both passed the check, the unique index let one commit) answers 409
/// instead of a 500. The transaction was rolled back, so nothing of the losing request was stored.
/// </summary>
public sealed class UniqueViolationHandler : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken ct)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } pg && pg.ConstraintName?.Contains(SourcesConfiguration.PrefixUniqueIndex, StringComparison.Ordinal) == true)
            {
                await Problems.WriteAsync(context, Problems.Conflict(
                    "Another source of this type with the same prefix was created at the same moment. Choose another prefix.", "prefix_taken", "prefix"));
                return true;
            }
        }

        return false;
    }
}
