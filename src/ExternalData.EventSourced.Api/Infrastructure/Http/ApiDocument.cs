using ExternalData.EventSourced.Infrastructure.Auth;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>
/// The OpenAPI document (ADR 0023): Microsoft.AspNetCore.OpenApi over the endpoints' own metadata, plus what it cannot
/// infer — the bearer API key scheme, and on each operation the scope it needs and the problem shape of its errors.
/// </summary>
public sealed class ApiDocument : IOpenApiDocumentTransformer, IOpenApiOperationTransformer
{
    public const string Scheme = "ApiKey";

    public Task TransformAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken ct)
    {
        document.Info = new OpenApiInfo
        {
            Title = "ExternalData.EventSourced — External Data Sources API",
            Version = "v1",
            Description = "PostHog's External Data Sources API, event-sourced. Authenticate with `Authorization: Bearer <personal API key>`. " +
                          "Errors are application/problem+json with PostHog's fields (type, code, detail, attr).",
        };
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[Scheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http, Scheme = "bearer", Description = "A personal API key (edk_…) with the scopes the operation names.",
        };
        return Task.CompletedTask;
    }

    public Task TransformAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken ct)
    {
        // Endpoints answer IResult; what they really answer is declared on them. Wolverine's guess from the return type goes.
        if (operation.Responses is { } responses)
        {
            foreach (var code in responses.Where(r => r.Value.Content?.Values.Any(c => c.Schema is OpenApiSchemaReference { Reference.Id: "IResult" }) == true)
                         .Select(r => r.Key).ToList())
                responses.Remove(code);
            foreach (var (code, text) in new[] { ("400", "Bad input: the field and the reason"), ("404", "Not found, or in another project") })
            {
                responses[code] = new OpenApiResponse
                {
                    Description = text,
                    Content = new Dictionary<string, OpenApiMediaType>
                    {
                        ["application/problem+json"] = new() { Schema = new OpenApiSchemaReference("ProblemDetails", context.Document) },
                    },
                };
            }
        }

        var route = context.Description.RelativePath ?? "";
        if (!route.StartsWith("api/projects/", StringComparison.Ordinal)) return Task.CompletedTask;

        var scope = string.Equals(context.Description.HttpMethod, "GET", StringComparison.OrdinalIgnoreCase) ? Scopes.Read : Scopes.Write;
        operation.Description = $"{operation.Description}{(string.IsNullOrEmpty(operation.Description) ? "" : " ")}Requires scope `{scope}`.".Trim();
        operation.Security ??= [];
        operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(Scheme, context.Document)] = [scope] });
        foreach (var (code, text) in new[] { ("401", "No or an unknown API key"), ("403", "The API key lacks the scope"), ("409", "If-Match named a stale version, or a unique value was taken") })
        {
            operation.Responses![code] = new OpenApiResponse
            {
                Description = text,
                Content = new Dictionary<string, OpenApiMediaType>
                {
                    ["application/problem+json"] = new() { Schema = new OpenApiSchemaReference("ProblemDetails", context.Document) },
                },
            };
        }

        return Task.CompletedTask;
    }
}
