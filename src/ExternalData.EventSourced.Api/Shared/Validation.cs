using FluentValidation;
using FluentValidation.Results;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>Runs a command's FluentValidation rules inside its use case, so every channel gets the same answer.</summary>
public static class Validation
{
    public static async Task<ProblemDetails?> CheckAsync<T>(IValidator<T> validator, T command, CancellationToken ct)
    {
        var result = await validator.ValidateAsync(command, ct);
        return result.IsValid ? null : ToProblem(result.Errors);
    }

    /// <summary>The first failure becomes <c>detail</c>/<c>attr</c> as PostHog reports one; all of them go under <c>errors</c>.</summary>
    public static ProblemDetails ToProblem(IReadOnlyList<ValidationFailure> failures)
    {
        var first = failures[0];
        var problem = Problems.Validation(first.ErrorMessage, SnakeCase(first.PropertyName), first.ErrorCode is { Length: > 0 } c && !c.EndsWith("Validator", StringComparison.Ordinal) ? c : "invalid_input");
        problem.Extensions["errors"] = failures
            .Select(f => new { attr = SnakeCase(f.PropertyName), detail = f.ErrorMessage })
            .ToList();
        return problem;
    }

    private static string SnakeCase(string propertyPath) =>
        string.Join('.', propertyPath.Split('.').Select(System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName));
}
