using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>The OpenAPI document describes every route the service maps, with its response schema, the problem
/// shape, the auth scheme and each route's scope; the interactive reference is served by the service itself.</summary>
public sealed class when_reading_the_api_reference(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task every_mapped_route_is_documented_with_its_response_schema_and_scope()
    {
        var document = (await App.Anonymous().GetAsync("/api/schema/")).ShouldHaveStatus(HttpStatusCode.OK).Json;
        var paths = document["paths"]!.AsObject();
        document["components"]!["securitySchemes"]!["ApiKey"]!["scheme"]!.GetValue<string>().ShouldBe("bearer");
        document["components"]!["schemas"]!["ProblemDetails"].ShouldNotBeNull();
        // The MCP tools with PostHog's argument names, read from the tools themselves.
        var description = document["tags"]!.AsArray().Single(t => t!["name"]!.GetValue<string>() == "MCP tools")!["description"]!.GetValue<string>();
        description.ShouldContain("| `external-data-sources-list` | `project_id`, `limit`, `offset`, `search` |");
        description.ShouldContain("| `external-data-sources-create` | **`source_type`**, **`payload`**, `project_id`");
        description.ShouldNotContain("projectId");

        var routes = App.Host.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText is { } raw && (raw.StartsWith("/api/projects", StringComparison.Ordinal) || raw.StartsWith("/connect", StringComparison.Ordinal)))
            .SelectMany(e => e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()!.HttpMethods.Select(m => (Path: e.RoutePattern.RawText!, Method: m.ToLowerInvariant())))
            .ToList();
        routes.Count.ShouldBeGreaterThan(18);

        foreach (var (path, method) in routes)
        {
            var operation = paths[path]?[method];
            operation.ShouldNotBeNull($"{method} {path} is not in the document");
            var success = operation["responses"]!.AsObject().Where(r => r.Key.StartsWith('2')).ToList();
            success.ShouldNotBeEmpty($"{method} {path} documents no success response");
            // PostHog answers these with 200 and an empty body (ref §5.16, §5.20, §5.22).
            if (success.All(r => r.Key is "204") || path.EndsWith("source_prefix", StringComparison.Ordinal)
                || new[] { "/reload", "/resync", "/cancel", "/delete_data" }.Any(action => path.EndsWith(action, StringComparison.Ordinal))) continue;
            success.ShouldContain(r => r.Value!["content"] != null && r.Value["content"]!.AsObject().Any(c => c.Value!["schema"] != null),
                $"{method} {path} has no response schema");
            if (path.StartsWith("/api/", StringComparison.Ordinal))
            {
                var scope = operation["security"]![0]!["ApiKey"]![0]!.GetValue<string>();
                scope.ShouldBe(method == "get" ? "external_data_source:read" : "external_data_source:write", $"{method} {path}");
                operation["responses"]!["400"]!["content"]!["application/problem+json"].ShouldNotBeNull();
            }
        }

        paths["/api/projects/{project_id}/external_data_sources/{id}"]!["get"]!["responses"]!["200"]!["content"]!["application/json"]!["schema"]!["$ref"]!
            .GetValue<string>().ShouldEndWith("SourceDetails");
    }

    [Fact]
    public async Task the_reference_is_served_from_the_service_on_a_closed_network()
    {
        using var http = App.Host.Server.CreateClient();
        var index = await http.GetAsync("/docs/index.html");
        index.StatusCode.ShouldBe(HttpStatusCode.OK);
        var html = await index.Content.ReadAsStringAsync();
        html.ShouldNotContain("src=\"http");
        html.ShouldNotContain("href=\"http");
        (await http.GetAsync("/docs/swagger-ui-bundle.js")).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await (await http.GetAsync("/docs/index.js")).Content.ReadAsStringAsync()).ShouldContain("/api/schema");
        var root = await new HttpClient(App.Host.Server.CreateHandler()) { BaseAddress = App.Host.Server.BaseAddress }.GetAsync("/");
        root.StatusCode.ShouldBe(HttpStatusCode.Redirect);
        root.Headers.Location!.ToString().ShouldBe("/docs/");
    }
}
