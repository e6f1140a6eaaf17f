using Microsoft.AspNetCore.Mvc;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.SourceTypes;
using FluentValidation;
using Marten;
using Wolverine.Http;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/source_prefix/ (API.md §3 row 9, ref §5.16): may this prefix be used?</summary>
public sealed record CheckSourcePrefix(string? Prefix, string? SourceType, string? AccessMethod)
{
    public sealed class Validator : AbstractValidator<CheckSourcePrefix>
    {
        // PostHog answers a missing source_type with a 500; we say what is missing.
        public Validator() => RuleFor(x => x.SourceType).NotEmpty().WithMessage("Missing required parameter: source_type").WithErrorCode("required");
    }
}

public static class CheckSourcePrefixEndpoint
{
    /// <summary>Uniqueness only, as PostHog (character rules are create's). 200 with an empty body when free.</summary>
    [WolverinePost("/api/projects/{project_id}/external_data_sources/source_prefix")]
    [ProducesResponseType(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(CheckSourcePrefix command, IQuerySession session, SourceTypeRegistry registry, CancellationToken ct)
    {
        if (!registry.TryGet(command.SourceType, out var type))
            return Results.Problem(Problems.Validation($"Unknown source_type '{command.SourceType}'", "source_type", "unknown_source_type"));

        var prefix = string.IsNullOrEmpty(command.Prefix) ? null : command.Prefix;
        var problem = (command.AccessMethod ?? AccessMethods.Warehouse) switch
        {
            AccessMethods.Direct when !type.Definition.Capabilities.DirectQuery =>
                Problems.Validation("Direct query mode is currently supported only for Postgres, MySQL, and Snowflake sources.", "access_method", "direct_query_not_supported"),
            AccessMethods.Direct => SourcePrefix.CheckDirectName(prefix),
            AccessMethods.Warehouse => SourcePrefix.CheckAvailable(prefix, await SourcePrefix.InUseAsync(session, type.Definition.Name, ct)),
            var other => Problems.Validation($"\"{other}\" is not a valid choice.", "access_method", "invalid_choice"),
        };
        return problem is null ? Results.Ok() : Results.Problem(problem);
    }
}
