using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Sources;

public sealed class when_updating_a_source(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task changes_the_description_and_bumps_the_version()
    {
        var id = (await CreateSourceAsync(prefix: "prod"))["id"]!.GetValue<string>();

        var updated = (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "nightly copy" })).ShouldHaveStatus(HttpStatusCode.OK).Json;

        updated["description"]!.GetValue<string>().ShouldBe("nightly copy");
        updated["version"]!.GetValue<int>().ShouldBe(CreatedVersion + 1);
        (await Api.GetAsync(SourceUrl(id))).Json["description"]!.GetValue<string>().ShouldBe("nightly copy");

        var minimal = (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "lean" },
            new Dictionary<string, string> { ["Prefer"] = "return=minimal" })).ShouldHaveStatus(HttpStatusCode.OK).Json;
        minimal.AsObject().ContainsKey("schemas").ShouldBeFalse("return=minimal asks for the source's own fields only");
        minimal["version"]!.GetValue<int>().ShouldBe(CreatedVersion + 2);
    }

    [Fact]
    public async Task answers_posthogs_shape_with_every_schema_equal_to_a_following_retrieve()
    {
        var id = (await CreateSourceAsync(prefix: "shape"))["id"]!.GetValue<string>();

        // PostHog's settings page reads the tables back from the PATCH answer (ref §4.1, §5.4): they must all be there.
        var updated = (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "edited in PostHog's UI" })).ShouldHaveStatus(HttpStatusCode.OK).Json;
        updated["schemas"]!.AsArray().Count.ShouldBe(PublicTables);

        // The answer is the source as it reads once the change is committed: a retrieve right after is the same JSON,
        // version and updated_at included (nothing else wrote in between).
        var retrieved = (await Api.GetAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.OK).Json;
        updated.ToJsonString().ShouldBe(retrieved.ToJsonString());
    }

    [Fact]
    public async Task keeps_the_stored_password_when_job_inputs_leave_it_out()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        // The live credential check runs again with the merged config: it only passes if the stored password was kept.
        var updated = (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["schema"] = "sales", ["password"] = "" } }))
            .ShouldHaveStatus(HttpStatusCode.OK).Json;

        updated["job_inputs"]!["schema"]!.GetValue<string>().ShouldBe("sales");
        updated["job_inputs"]!.AsObject().ContainsKey("password").ShouldBeFalse();
    }

    [Fact]
    public async Task a_new_password_is_checked_live()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["password"] = "wrong-one" } }))
            .ShouldBeProblem(HttpStatusCode.BadRequest,
                "The database rejected the username or password. Check the user and password, and that this user may log in from outside the database server.");
        (await EventCountAsync(id)).ShouldBe(CreatedVersion);
    }

    [Fact]
    public async Task changing_the_host_without_the_password_is_refused()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["host"] = "localhost" } }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Changing the connection host requires re-entering your credentials.", "job_inputs");

        var withPassword = new JsonObject { ["job_inputs"] = new JsonObject { ["host"] = "localhost", ["password"] = App.Source.ReaderPassword } };
        (await Api.PatchAsync(SourceUrl(id), withPassword)).ShouldHaveStatus(HttpStatusCode.OK).Json["job_inputs"]!["host"]!.GetValue<string>().ShouldBe("localhost");
    }

    [Fact]
    public async Task a_masked_placeholder_is_never_stored()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["password"] = "********" } }))
            .ShouldBeProblem(HttpStatusCode.BadRequest,
                "'password' holds a masked placeholder, not a secret. Send the real value, or leave the field out to keep the stored one.", "job_inputs.password");
    }

    [Theory]
    [InlineData("access_method", "direct", "Access method cannot be changed. Create a new source instead.")]
    [InlineData("source_type", "Stripe", "Source type cannot be changed. Create a new source instead.")]
    [InlineData("prefix", "other", "Prefix cannot be changed on warehouse sources.")]
    public async Task immutable_fields_are_refused(string field, string value, string detail)
    {
        var id = (await CreateSourceAsync(prefix: "prod"))["id"]!.GetValue<string>();

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { [field] = value })).ShouldBeProblem(HttpStatusCode.BadRequest, detail, field);
        (await EventCountAsync(id)).ShouldBe(CreatedVersion);
    }

    [Fact]
    public async Task a_direct_source_can_be_renamed_but_not_to_blank()
    {
        var body = CreateBody(prefix: "Live");
        body["access_method"] = "direct";
        var id = (await Api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["prefix"] = " " }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Name is required for direct query sources", "prefix");
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["prefix"] = "Live orders" })).ShouldHaveStatus(HttpStatusCode.OK)
            .Json["prefix"]!.GetValue<string>().ShouldBe("Live orders");
    }

    [Fact]
    public async Task if_match_is_enforced()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();
        var ifMatch = new Dictionary<string, string> { ["If-Match"] = $"\"{CreatedVersion}\"" };

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "first" }, ifMatch)).ShouldHaveStatus(HttpStatusCode.OK);
        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["description"] = "second" }, ifMatch))
            .ShouldBeProblem(HttpStatusCode.Conflict, $"The source is at version {CreatedVersion + 1}, not {CreatedVersion}. Fetch it again and re-apply your change.");
        (await Api.GetAsync(SourceUrl(id))).Json["description"]!.GetValue<string>().ShouldBe("first");
    }

    [Fact]
    public async Task invalid_config_is_refused_in_posthogs_words()
    {
        var id = (await CreateSourceAsync())["id"]!.GetValue<string>();

        (await Api.PatchAsync(SourceUrl(id), new JsonObject { ["job_inputs"] = new JsonObject { ["port"] = "not-a-port", ["password"] = "x" } }))
            .ShouldBeProblem(HttpStatusCode.BadRequest, "Invalid source config: Field 'port' has an invalid value", "job_inputs.port");
    }

    [Fact]
    public async Task an_unknown_source_answers_404()
    {
        (await Api.PatchAsync(SourceUrl(Guid.NewGuid().ToString()), new JsonObject { ["description"] = "x" }))
            .ShouldBeProblem(HttpStatusCode.NotFound, "Not found.");
    }
}
