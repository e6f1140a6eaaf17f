using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_deciding_a_creation
{
    [Fact]
    public void the_checked_draft_becomes_the_created_event_and_one_event_per_table_and_the_response_is_what_a_read_returns()
    {
        var id = Guid.NewGuid();
        var schemas = new[] { when_folding_a_source.Zebra, when_folding_a_source.Orders }.Select(s => new NewSchema(s.Id, s.Name, s.Facts, s.Settings)).ToList();
        var dataKey = new DataKey { Id = id, MasterKeyId = "k1", WrappedKey = "d3JhcHBlZA==" };
        var draft = new NewSource(id, Given.Postgres, AccessMethods.Warehouse, "prod", new JsonObject { ["host"] = "db.example.com" },
            new SealedSecrets("bm9uY2U=", "Y2lwaGVy"), dataKey, schemas);
        var command = new CreateSource("Postgres", new JsonObject(), "prod", "", null, "mcp", false) { Caller = when_folding_a_source.Caller with { ProjectId = "42" } };

        var (created, tables) = CreateSourceHandler.Decide(command, draft, Given.Now);

        created.SourceId.ShouldBe(id);
        created.ProjectId.ShouldBe("42");
        created.CreatedVia.ShouldBe("mcp");
        created.Description.ShouldBeNull();
        created.DirectQueryEnabled.ShouldBeFalse();
        created.CreatedAt.ShouldBe(Given.Now);
        created.CreatedBy.Name.ShouldBe("alice");
        created.TableCount.ShouldBe(2);
        tables.Select(t => t.Name).ShouldBe(["zebra", "orders"]);
        tables.ShouldAllBe(t => t.SourceId == id && t.AddedVia == "mcp" && t.AddedAt == Given.Now);

        var (response, _, storeKey, firstRuns) = CreateSourceHandler.Handle(command, draft, Given.Now);
        response.Value!.Version.ShouldBe(3);
        response.Value.Schemas!.Select(s => s.Name).ShouldBe(["orders", "zebra"]);
        response.Value.SupportsColumnSelection.ShouldBeTrue();
        response.Value.JobInputs.ToJsonString().ShouldBe("{\"host\":\"db.example.com\"}");
        storeKey.GetType().Name.ShouldStartWith("Store");
        // Both tables of the draft are enabled: the scheduler is asked, in the same transaction, to start their first runs.
        var arm = firstRuns.ShouldHaveSingleItem().ShouldBeOfType<Wolverine.DeliveryMessage<ArmSyncSchedules>>();
        arm.Message.SchemaIds.Count.ShouldBe(tables.Count(t => t.Settings.ShouldSync));
        arm.Options!.TenantId.ShouldBe(command.Caller.ProjectId);
    }

    [Fact]
    public void a_refused_draft_records_nothing()
    {
        var command = new CreateSource("Postgres", new JsonObject(), null, null, null, null, null) { Caller = when_folding_a_source.Caller };
        var (response, start, key, firstRuns) = CreateSourceHandler.Handle(command, ExternalData.EventSourced.Shared.Problems.Validation("no"), Given.Now);
        firstRuns.ShouldBeEmpty();

        response.Problem!.Detail.ShouldBe("no");
        start.GetType().Name.ShouldBe("NoOp");
        key.GetType().Name.ShouldBe("NoOp");
    }
}
