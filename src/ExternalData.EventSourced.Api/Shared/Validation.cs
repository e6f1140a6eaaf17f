using ExternalData.EventSourced.Infrastructure.Http;
using FluentValidation;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>Runs a command's FluentValidation rules inside its use case, so every channel gets the same answer.</summary>
public static class Validation
{
    public static async Task<ProblemDetails?> CheckAsync<T>(IValidator<T> validator, T command, CancellationToken ct)
    {
        var result = await validator.ValidateAsync(command, ct);
        return result.IsValid ? null : FluentValidationPolicy.ToProblem(result.Errors);
    }
}
