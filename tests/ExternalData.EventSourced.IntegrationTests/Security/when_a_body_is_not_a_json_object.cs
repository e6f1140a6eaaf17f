using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Security;

/// <summary>Every endpoint that takes a body takes a JSON object: any other JSON value is a 400 naming the body,
/// and nothing is stored. An empty body reads as <c>{}</c>.</summary>
public sealed class when_a_body_is_not_a_json_object(AppFixture app) : IntegrationContext(app)
{
    public static TheoryData<string, string> Bodies => new()
    {
        { "null", "The request body must be a JSON object, not null." },
        { " null ", "The request body must be a JSON object, not null." },
        { "[]", "The request body must be a JSON object, not an array." },
        { "[{\"source_type\":\"Postgres\"}]", "The request body must be a JSON object, not an array." },
        { "1", "The request body must be a JSON object, not a number." },
        { "-2.5", "The request body must be a JSON object, not a number." },
        { "\"x\"", "The request body must be a JSON object, not a string." },
        { "true", "The request body must be a JSON object, not a boolean." },
        { "false", "The request body must be a JSON object, not a boolean." },
    };

    [Theory]
    [MemberData(nameof(Bodies))]
    public async Task every_write_endpoint_refuses_it_and_stores_nothing(string body, string detail)
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var before = await EventCountAsync();

        var writes = new (HttpMethod Method, string Url)[]
        {
            (HttpMethod.Post, Sources),
            (HttpMethod.Post, $"{Sources}database_schema/"),
            (HttpMethod.Post, $"{Sources}source_prefix/"),
            (HttpMethod.Patch, SourceUrl(id)),
            (HttpMethod.Patch, $"{SourceUrl(id)}bulk_update_schemas/"),
            (HttpMethod.Post, $"{SourceUrl(id)}refresh_schemas/"),
        };
        foreach (var (method, url) in writes)
        {
            var response = await Api.SendAsync(method, url, body);
            response.ShouldBeProblem(HttpStatusCode.BadRequest, detail);
            response.Json["code"]!.GetValue<string>().ShouldBe("body_not_an_object", $"{method} {url}");
        }

        (await EventCountAsync()).ShouldBe(before);
    }

    [Fact]
    public async Task an_empty_body_reads_as_an_empty_object()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        (await Api.SendAsync(HttpMethod.Patch, SourceUrl(id), "")).ShouldHaveStatus(HttpStatusCode.OK).Json["version"]!.GetValue<int>().ShouldBe(CreatedVersion);
        (await Api.SendAsync(HttpMethod.Post, $"{SourceUrl(id)}refresh_schemas/")).ShouldHaveStatus(HttpStatusCode.OK).Json["added"]!.GetValue<int>().ShouldBe(0);
        (await Api.SendAsync(HttpMethod.Post, Sources, "  ")).ShouldBeProblem(HttpStatusCode.BadRequest, "This field is required.", "source_type");
    }

    [Fact]
    public async Task a_body_that_is_not_json_at_all_is_a_parse_error()
    {
        (await Api.SendAsync(HttpMethod.Post, Sources, "source_type=Postgres")).ShouldBeProblem(HttpStatusCode.BadRequest, "The request body is not valid JSON.");
        (await Api.PostAsync(Sources, new JsonObject())).ShouldBeProblem(HttpStatusCode.BadRequest, "This field is required.", "source_type");
    }
}
