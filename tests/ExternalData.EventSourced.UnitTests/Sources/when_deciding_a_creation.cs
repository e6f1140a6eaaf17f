using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Sources;
using Microsoft.AspNetCore.Http;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_deciding_a_creation
{
    [Fact]
    public void the_checked_draft_becomes_one_created_event_and_the_response_is_what_a_read_returns()
    {
        var id = Guid.NewGuid();
        var schemas = when_folding_a_source.Created().Schemas;
        var dataKey = new DataKey { Id = id, MasterKeyId = "k1", WrappedKey = "d3JhcHBlZA==" };
        var draft = new NewSource(id, Given.Postgres, AccessMethods.Warehouse, "prod", new JsonObject { ["host"] = "db.example.com" },
            new SealedSecrets("bm9uY2U=", "Y2lwaGVy"), dataKey, schemas);
        var context = new DefaultHttpContext();
        context.Request.Path = "/api/environments/42/external_data_sources";

        var (response, startStream, storeKey) = CreateSourceEndpoint.Post("42",
            new CreateSource("Postgres", new JsonObject(), "prod", "", null, "mcp", false), draft, Given.User(), Given.Now, context);

        response.Location.ShouldBe($"/api/environments/42/external_data_sources/{id}/");
        var created = startStream.Events.ShouldHaveSingleItem().ShouldBeOfType<SourceCreated>();
        created.SourceId.ShouldBe(id);
        created.ProjectId.ShouldBe("42");
        created.CreatedVia.ShouldBe("mcp");
        created.Description.ShouldBeNull();
        created.DirectQueryEnabled.ShouldBeFalse();
        created.CreatedAt.ShouldBe(Given.Now);
        created.CreatedBy.Name.ShouldBe("alice");
        created.Schemas.ShouldBe(schemas);
        response.Value!.Version.ShouldBe(1);
        response.Value.SupportsColumnSelection.ShouldBeTrue();
        response.Value.JobInputs.ToJsonString().ShouldBe("{\"host\":\"db.example.com\"}");
        storeKey.GetType().Name.ShouldStartWith("Store");
    }
}
