using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Sources;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_validating_a_create_request
{
    private static readonly CreateSource.Validator Validator = new();

    [Fact]
    public void a_complete_request_passes() =>
        Validator.Validate(new CreateSource("Postgres", new JsonObject(), "prod", null, "warehouse", "mcp", true)).IsValid.ShouldBeTrue();

    [Fact]
    public void the_first_failure_becomes_detail_and_attr_in_snake_case()
    {
        var result = Validator.Validate(new CreateSource(null, null, new string('p', 101), null, "tunnel", "fax", null));

        var problem = ExternalData.EventSourced.Shared.Validation.ToProblem(result.Errors);
        problem.Detail.ShouldBe("This field is required.");
        problem.Extensions["attr"].ShouldBe("source_type");
        problem.Extensions["code"].ShouldBe("required");
        problem.Status.ShouldBe(400);
        result.Errors.Select(e => e.ErrorMessage).ShouldBe([
            "This field is required.", "This field is required.", "Ensure this field has no more than 100 characters.",
            "\"tunnel\" is not a valid choice.", "\"fax\" is not a valid choice.",
        ]);
    }
}
