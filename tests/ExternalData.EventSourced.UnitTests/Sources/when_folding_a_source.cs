using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Sources;
using JasperFx.Events;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_folding_a_source
{
    public static readonly Guid SourceId = Guid.Parse("01a2176c-6f6b-715f-b6d9-4ef8468114c6");
    private static readonly Actor Alice = new(Guid.Parse("01a2176b-5003-7d90-8f49-c3ffe88af8df"), "alice");

    public static SourceCreated Created(string? prefix = "prod", SealedSecrets? secrets = null) => new(
        SourceId, "1", "Postgres", AccessMethods.Warehouse, prefix, null, true, null,
        new JsonObject { ["host"] = "db.example.com", ["port"] = 5432, ["database"] = "app", ["user"] = "reader" },
        secrets ?? new SealedSecrets("bm9uY2U=", "Y2lwaGVy"),
        [
            new SchemaSettings(Guid.NewGuid(), "zebra", null, null, false, null, null, null, null, null, "6hour", null, null, null, null, [],
                new DiscoveryFacts(false, false, false, false, false, null, null)),
            new SchemaSettings(Guid.NewGuid(), "orders", null, "Orders", true, SyncTypes.Incremental, "updated_at", "timestamp", 60, ["id"], "6hour", null, null, null,
                null, [new AvailableColumn("id", "integer", false)], new DiscoveryFacts(true, true, true, false, false, ["id"], 50)),
        ],
        Alice, "api", Given.Now);

    [Fact]
    public void the_write_model_starts_from_the_created_event_and_takes_updates()
    {
        var source = Source.Create(Created());
        source.Apply(new SourceUpdated(SourceId, ["description"], "prod", "nightly", false, source.JobInputs, null, Alice, Given.Now));

        source.Description.ShouldBe("nightly");
        source.DirectQueryEnabled.ShouldBeFalse();
        source.Secrets.ShouldNotBeNull("an update without new secrets keeps the sealed ones");
        source.ShouldDelete(new SourceDeleted(SourceId, Alice, Given.Now)).ShouldBeTrue();
    }

    [Fact]
    public void the_read_model_orders_schemas_by_name_and_derives_the_status()
    {
        var details = SourceDetailsProjection.Create(new Event<SourceCreated>(Created()) { Version = 1 });

        details.Schemas.Select(s => s.Name).ShouldBe(["orders", "zebra"]);
        details.Status.ShouldBe("Running");
        details.Version.ShouldBe(1);
        details.CreatedBy.ShouldBe("alice");
        details.Schemas[0].Incremental.ShouldBeTrue();
        details.Schemas[0].IncrementalFieldLookbackSeconds.ShouldBe(60);

        SourceDetailsProjection.Apply(new Event<SourceUpdated>(new SourceUpdated(SourceId, ["description"], "prod", "x", true, details.JobInputs, null, Alice, Given.Now.AddHours(1))) { Version = 2 }, details);
        details.Description.ShouldBe("x");
        details.Version.ShouldBe(2);
        details.UpdatedAt.ShouldBe(Given.Now.AddHours(1));
    }

    [Theory]
    [InlineData("Failed", "Failed")]
    [InlineData("BillingLimitReached", "Billing limits")]
    [InlineData("BillingLimitTooLow", "Billing limits too low")]
    [InlineData("Paused", "Paused")]
    [InlineData("Completed", "Completed")]
    [InlineData(null, "Running")]
    public void the_status_follows_posthogs_precedence(string? schemaStatus, string expected)
    {
        var schemas = new List<SchemaDetails> { new() { Name = "a", ShouldSync = true, Status = schemaStatus }, new() { Name = "b", ShouldSync = false, Status = "Failed" } };
        SourceStatus.Derive(schemas, "Running").ShouldBe(expected);
    }
}
