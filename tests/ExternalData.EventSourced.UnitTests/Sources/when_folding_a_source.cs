using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using JasperFx.Events;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_folding_a_source
{
    public static readonly Guid SourceId = Guid.Parse("01a2176c-6f6b-715f-b6d9-4ef8468114c6");
    public static readonly Actor Alice = new(Guid.Parse("01a2176b-5003-7d90-8f49-c3ffe88af8df"), "alice");
    public static readonly Caller Caller = new(Alice, "1", Channel.Api, "corr-1", "POST /x#1");

    public static SourceCreated Created(string? prefix = "prod", SealedSecrets? secrets = null) => new(
        SourceId, "1", "Postgres", AccessMethods.Warehouse, prefix, null, true, null,
        new JsonObject { ["host"] = "db.example.com", ["port"] = 5432, ["database"] = "app", ["user"] = "reader" },
        secrets ?? new SealedSecrets("bm9uY2U=", "Y2lwaGVy"), 2, Alice, "api", Given.Now);

    public static readonly SourceSchema Zebra = new()
    {
        Id = Guid.Parse("01a2176c-0000-7000-8000-000000000001"), SourceId = SourceId, Name = "zebra",
        Facts = new TableFacts(null, null, [], new DiscoveryFacts(false, false, false, false, false, null, null)),
        Settings = SyncSettings.Disabled with { SyncFrequency = "6hour" },
    };

    public static readonly SourceSchema Orders = new()
    {
        Id = Guid.Parse("01a2176c-0000-7000-8000-000000000002"), SourceId = SourceId, Name = "orders",
        Facts = new TableFacts(null, "Orders", [new AvailableColumn("id", "integer", false), new AvailableColumn("updated_at", "timestamp", true)],
            new DiscoveryFacts(true, true, true, false, false, ["id"], 50)),
        Settings = new SyncSettings(true, SyncTypes.Incremental, "updated_at", "timestamp", 60, ["id"], "6hour", null, null, null, null),
        EverEnabled = true,
    };

    public static SchemaAdded Added(SourceSchema schema) =>
        new(SourceId, schema.Id, schema.Name, schema.Facts, schema.Settings, Alice, "api", Given.Now);

    /// <summary>The stream of a freshly created source: the source, then one event per table, versions 1..3.</summary>
    public static IReadOnlyList<IEvent> Stream() =>
    [
        new Event<SourceCreated>(Created()) { Version = 1 },
        new Event<SchemaAdded>(Added(Zebra)) { Version = 2 },
        new Event<SchemaAdded>(Added(Orders)) { Version = 3 },
    ];

    [Fact]
    public void the_write_model_starts_from_the_created_event_and_takes_updates()
    {
        var source = Source.Create(Created());
        source.Apply(new SourceUpdated(SourceId, ["description"], "prod", "nightly", false, source.JobInputs, null, Alice, "api", Given.Now));

        source.Description.ShouldBe("nightly");
        source.DirectQueryEnabled.ShouldBeFalse();
        source.Secrets.ShouldNotBeNull("an update without new secrets keeps the sealed ones");
        source.ShouldDelete(new SourceDeleted(SourceId, Alice, "api", Given.Now)).ShouldBeTrue();
    }

    [Fact]
    public void the_document_holds_what_reads_show_and_each_table_event_moves_its_version()
    {
        Source? source = null;
        foreach (var @event in Stream()) source = Source.After(source, @event);
        var details = SourceDetails.Of(source!, Given.Registry);

        details.Status.ShouldBe("Running");
        details.Version.ShouldBe(3);
        details.CreatedBy.ShouldBe("alice");
        details.CreatedVia.ShouldBe("api");
        details.SupportsColumnSelection.ShouldBeTrue("capabilities come from the source type this build knows");
        details.Schemas.ShouldBeNull("the document never holds the schemas");

        source = Source.After(source, new Event<SourceUpdated>(new SourceUpdated(SourceId, ["description"], "prod", "x", true, source!.JobInputs, null, Alice, "api", Given.Now.AddHours(1))) { Version = 4 });
        details = SourceDetails.Of(source!, Given.Registry);
        details.Description.ShouldBe("x");
        details.Version.ShouldBe(4);
        details.UpdatedAt.ShouldBe(Given.Now.AddHours(1));
    }

    [Fact]
    public void the_public_face_shows_cdc_in_job_inputs_and_no_secrets()
    {
        var source = Source.Create(Created());
        source.Apply(new CdcEnabled(SourceId, "posthog", "slot_a", "pub_a", "0/1", true, true, [], true, 1024, 10240, Alice, "api", Given.Now));

        var details = SourceDetails.Of(source, Given.Registry);

        details.JobInputs["cdc_slot_name"]!.GetValue<string>().ShouldBe("slot_a");
        details.Cdc!.SlotName.ShouldBe("slot_a");
        source.JobInputs.ContainsKey("cdc_slot_name").ShouldBeFalse("the shown config is a copy; the stored one keeps the public config only");
        System.Text.Json.JsonSerializer.Serialize(details).ShouldNotContain("Y2lwaGVy", customMessage: "the sealed secrets stay in the document");
    }

    [Fact]
    public void a_copy_takes_a_decision_without_touching_the_loaded_document()
    {
        var source = Source.Create(Created());
        source.Version = 1;

        var after = source.Folded([new SourceUpdated(SourceId, ["description"], "prod", "x", true, new JsonObject { ["host"] = "h2" }, null, Alice, "api", Given.Now)]);

        after.Description.ShouldBe("x");
        after.Version.ShouldBe(2);
        source.Description.ShouldBeNull();
        source.Version.ShouldBe(1);
        source.JobInputs["host"]!.GetValue<string>().ShouldBe("db.example.com");
    }

    [Fact]
    public void as_of_folds_the_source_with_its_schemas_ordered_by_name()
    {
        var settings = Orders.Settings with { SyncFrequency = "1hour" };
        var stream = Stream().Append(new Event<SchemasBulkUpdated>(new SchemasBulkUpdated(SourceId,
            [new SchemaSettingsChange(Orders.Id, "orders", settings, ["sync_frequency"])], ["sync_frequency"], Alice, "api", Given.Now)) { Version = 4 }).ToList();

        var past = SourceAsOf.Fold(stream.Take(3), Given.Registry)!;
        past.Schemas!.Select(s => s.Name).ShouldBe(["orders", "zebra"]);
        past.Schemas![0].SyncFrequency.ShouldBe("6hour");
        past.Schemas![0].IncrementalFieldLookbackSeconds.ShouldBe(60);

        var now = SourceAsOf.Fold(stream, Given.Registry)!;
        now.Version.ShouldBe(4);
        now.Schemas![0].SyncFrequency.ShouldBe("1hour");

        SourceAsOf.Fold([.. stream, new Event<SourceDeleted>(new SourceDeleted(SourceId, Alice, "api", Given.Now)) { Version = 5 }], Given.Registry).ShouldBeNull();
    }

    [Fact]
    public void a_schema_document_follows_its_events()
    {
        var schema = SourceSchemaProjection.Create(new Event<SchemaAdded>(Added(Zebra)));
        schema.EverEnabled.ShouldBeFalse();

        var enabled = Zebra.Settings with { ShouldSync = true, SyncType = SyncTypes.FullRefresh };
        SourceSchemaProjection.Apply(new SchemasBulkUpdated(SourceId, [new SchemaSettingsChange(Zebra.Id, "zebra", enabled, ["should_sync", "sync_type"])],
            ["should_sync", "sync_type"], Alice, "api", Given.Now), schema);
        schema.Settings.ShouldBe(enabled);
        schema.EverEnabled.ShouldBeTrue();

        SourceSchemaProjection.Apply(new SchemasRefreshed(SourceId, [], [], [], [new SchemaRef(Zebra.Id, "zebra")], [], [], 1, Alice, "api", Given.Now), schema);
        schema.Settings.ShouldSync.ShouldBeFalse();
        schema.Removed.ShouldBeFalse();
    }
}
