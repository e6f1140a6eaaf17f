using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

public static class CheckCdcPrerequisitesEndpoints
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/check_cdc_prerequisites")]
    [ProducesResponseType<CdcPrerequisitesResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(JsonObject body, SourceTypeRegistry registry, CancellationToken ct) =>
        Respond(await CdcPrerequisiteChecks.ForConfigAsync(body, registry, ct));

    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/check_cdc_prerequisites_for_source")]
    [ProducesResponseType<CdcPrerequisitesResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> PostForSource(Guid id, JsonObject body, IQuerySession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct) =>
        Respond(await CdcPrerequisiteChecks.ForSourceAsync(id, body, session, registry, cipher, ct));

    private static IResult Respond(Checked<CdcPrerequisitesResult> outcome) =>
        outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
}
