using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>
/// Our error contract (API.md §1.3): RFC 9457 problem details that also carry PostHog's fields
/// (<c>type, code, detail, attr</c>) and <c>message</c> (= detail), so both kinds of client can read them.
/// </summary>
public static class Problems
{
    public static ProblemDetails Validation(string detail, string? attr = null, string code = "invalid_input") =>
        Create(StatusCodes.Status400BadRequest, "validation_error", code, detail, attr);

    public static ProblemDetails NotFound(string detail = "Not found.") =>
        Create(StatusCodes.Status404NotFound, "not_found", "not_found", detail, null);

    public static ProblemDetails Conflict(string detail, string code = "conflict", string? attr = null) =>
        Create(StatusCodes.Status409Conflict, "conflict", code, detail, attr);

    public static ProblemDetails Unauthenticated(string detail) =>
        Create(StatusCodes.Status401Unauthorized, "authentication_error", "not_authenticated", detail, null);

    public static ProblemDetails MissingScope(string scope) =>
        Create(StatusCodes.Status403Forbidden, "permission_denied", "permission_denied", $"API key missing required scope '{scope}'", null);

    public static ProblemDetails Create(int status, string type, string code, string detail, string? attr)
    {
        var problem = new ProblemDetails { Status = status, Type = type, Title = TitleFor(status), Detail = detail };
        problem.Extensions["code"] = code;
        problem.Extensions["attr"] = attr;
        problem.Extensions["message"] = detail;
        return problem;
    }

    public static string TypeFor(int status) => status switch
    {
        400 => "validation_error",
        401 => "authentication_error",
        403 => "permission_denied",
        404 => "not_found",
        409 => "conflict",
        >= 500 => "server_error",
        _ => "invalid_request",
    };

    private static string TitleFor(int status) => status switch
    {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        503 => "Service Unavailable",
        _ => "Error",
    };

    public static Task WriteAsync(HttpContext context, ProblemDetails problem)
    {
        context.Response.StatusCode = problem.Status ?? 500;
        return context.Response.WriteAsJsonAsync(problem, (System.Text.Json.JsonSerializerOptions?)null, "application/problem+json");
    }
}
