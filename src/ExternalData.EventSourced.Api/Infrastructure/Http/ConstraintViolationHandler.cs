using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Npgsql;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>A feature's unique index and what a write that hit it means to the caller. Features register these; the
/// infrastructure below only knows that a named constraint maps to a problem.</summary>
public sealed record UniqueConstraintProblem(string ConstraintName, Func<ProblemDetails> Problem)
{
    /// <summary>The problem for a unique violation anywhere in the exception chain, or null.</summary>
    public static ProblemDetails? Find(Exception exception, IEnumerable<UniqueConstraintProblem> known)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } pg &&
                known.FirstOrDefault(k => pg.ConstraintName?.Contains(k.ConstraintName, StringComparison.Ordinal) == true) is { } match)
            {
                return match.Problem();
            }
        }

        return null;
    }
}

/// <summary>
/// A write that lost a race for a unique value (both passed the check, the index let one commit) answers with the
/// feature's problem (409) instead of a 500. The transaction was rolled back, so nothing of the losing request was stored.
/// </summary>
public sealed class ConstraintViolationHandler(IEnumerable<UniqueConstraintProblem> known) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken ct)
    {
        if (UniqueConstraintProblem.Find(exception, known) is not { } problem) return false;
        await Problems.WriteAsync(context, problem);
        return true;
    }
}
