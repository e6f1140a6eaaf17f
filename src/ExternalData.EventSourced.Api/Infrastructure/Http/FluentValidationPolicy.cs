using ExternalData.EventSourced.Shared;
using FluentValidation;
using FluentValidation.Results;
using JasperFx;
using JasperFx.CodeGeneration;
using JasperFx.CodeGeneration.Frames;
using Wolverine.Http;
using Wolverine.Http.CodeGen;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>
/// Runs the request type's FluentValidation validator in front of every endpoint that has one, and ends the
/// request with our problem shape on failure. (WolverineFx.Http.FluentValidation is not served here; this is
/// the same idea shaped to PostHog's <c>attr</c>/<c>code</c> contract.)
/// </summary>
public sealed class FluentValidationPolicy : IHttpPolicy
{
    public void Apply(IReadOnlyList<HttpChain> chains, GenerationRules rules, IServiceContainer container)
    {
        // Use-case commands validate inside their use case (Shared/Validation), so every channel gets the same answer.
        foreach (var chain in chains.Where(c => c.RequestType is not null && c.RequestType != typeof(void) && !typeof(Shared.ICommand).IsAssignableFrom(c.RequestType)))
        {
            var validatorType = typeof(IValidator<>).MakeGenericType(chain.RequestType!);
            if (!container.HasRegistrationFor(validatorType)) continue;

            chain.Metadata.ProducesProblem(StatusCodes.Status400BadRequest);
            var method = typeof(FluentValidationPolicy).GetMethod(nameof(ValidateAsync))!.MakeGenericMethod(chain.RequestType!);
            var call = new MethodCall(typeof(FluentValidationPolicy), method);
            // A non-continue result short-circuits the endpoint before any handler code runs.
            chain.Middleware.InsertRange(0, [call, new MaybeEndWithResultFrame(call.ReturnVariable!)]);
        }
    }

    public static async Task<IResult> ValidateAsync<T>(IValidator<T> validator, T request)
    {
        var result = await validator.ValidateAsync(request);
        return result.IsValid ? WolverineContinue.Result() : Results.Problem(Validation.ToProblem(result.Errors));
    }
}
