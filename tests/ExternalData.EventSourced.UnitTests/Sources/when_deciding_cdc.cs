using System.Text.Json.Nodes;
using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using JasperFx.Events;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

/// <summary>CDC's pure parts: the options in PostHog's words, the settings decider, the health level, the folds.</summary>
public sealed class when_deciding_cdc
{
    private static readonly CdcEnabled Enabled = new(when_folding_a_source.SourceId, CdcModes.Managed, "posthog_abc", "posthog_pub_abc", "0/16B3748", true, true,
        ["public.orders"], true, 1024, 10240, when_folding_a_source.Alice, "api", Given.Now);

    [Theory]
    [InlineData("""{}""", null)]
    [InlineData("""{"cdc_management_mode":"managed"}""", null)]
    [InlineData("""{"cdc_management_mode":"mirror"}""", "cdc_management_mode must be 'posthog' or 'self_managed'.")]
    [InlineData("""{"cdc_lag_warning_threshold_mb":1.5}""", "cdc_lag_warning_threshold_mb must be an integer.")]
    [InlineData("""{"cdc_lag_critical_threshold_mb":-3}""", "cdc_lag_critical_threshold_mb must be >= 1.")]
    [InlineData("""{"cdc_lag_warning_threshold_mb":20,"cdc_lag_critical_threshold_mb":20}""", "Warning threshold must be less than critical threshold.")]
    [InlineData("""{"cdc_slot_name":"Robert'); DROP TABLE x;--"}""", "cdc_slot_name may contain only lower-case letters, digits and underscores, at most 63 characters.")]
    [InlineData("""{"cdc_auto_drop_slot":"yes"}""", "cdc_auto_drop_slot must be a boolean.")]
    public void options_are_refused_in_posthogs_words(string body, string? detail)
    {
        var (choice, problem) = CdcOptions.Parse(JsonNode.Parse(body)!.AsObject());
        problem?.Detail.ShouldBe(detail);
        if (detail is null) choice!.Mode.ShouldBe(CdcModes.Managed);
    }

    // The names are the source type's (its CDC capability): a Postgres source here.
    private static readonly IChangeDataCapture Postgres = new ExternalData.EventSourced.SourceTypes.Postgres.PostgresSourceType(Given.HostPolicy());

    [Fact]
    public void default_names_come_from_the_random_end_of_the_source_id()
    {
        var id = Guid.Parse("01a2176c-6f6b-715f-b6d9-4ef8468114c6");
        var managed = new CdcChoice(CdcModes.Managed, null, null, true, 1024, 10240).ResourcesFor(Postgres, id);
        managed.ShouldBe(new CdcResources(CdcModes.Managed, "posthog_4ef8468114c6", "posthog_pub_4ef8468114c6", DefaultNames: true));
        new CdcChoice(CdcModes.SelfManaged, "mine", null, true, 1024, 10240).ResourcesFor(Postgres, id)
            .ShouldBe(new CdcResources(CdcModes.SelfManaged, "mine", "posthog_pub", DefaultNames: false));
    }

    private static Source CdcSource()
    {
        var source = Source.Create(when_folding_a_source.Created());
        source.Apply(Enabled);
        return source;
    }

    [Fact]
    public void settings_change_only_when_a_value_changes()
    {
        var command = new UpdateCdcSettings(when_folding_a_source.SourceId, new JsonObject { ["cdc_lag_critical_threshold_mb"] = 10240 })
        {
            Caller = when_folding_a_source.Caller,
        };
        UpdateCdcSettingsHandler.Decide(command, CdcSource(), Given.Now).ShouldBe((null, null));

        var changed = UpdateCdcSettingsHandler.Decide(command with { Changes = new JsonObject { ["cdc_auto_drop_slot"] = false } }, CdcSource(), Given.Now).Changed!;
        changed.ChangedFields.ShouldBe(["cdc_auto_drop_slot"]);
        changed.AutoDropSlot.ShouldBeFalse();
        changed.LagCriticalThresholdMb.ShouldBe(10240);

        UpdateCdcSettingsHandler.Decide(command, Source.Create(when_folding_a_source.Created()), Given.Now).Problem!.Detail.ShouldBe("CDC is not enabled on this source.");
    }

    [Theory]
    [InlineData(true, 10L, "reserved", "ok")]
    [InlineData(true, 200L, "reserved", "warning")]
    [InlineData(true, 5000L, "extended", "critical")]
    [InlineData(true, 10L, "unreserved", "warning")]
    [InlineData(true, 10L, "lost", "critical")]
    [InlineData(false, 0L, null, "critical")]
    public void the_level_follows_retained_wal_and_the_thresholds(bool slotExists, long retainedMb, string? walStatus, string level)
    {
        var settings = CdcSettings.From(Enabled with { LagWarningThresholdMb = 100, LagCriticalThresholdMb = 1000 });
        var health = new CdcHealth(slotExists, true, 0, retainedMb * 1024 * 1024, walStatus, null, false, null, null, []);
        CdcStatusQuery.Level(health, settings).ShouldBe(level);
    }

    [Fact]
    public void an_as_of_read_and_the_write_model_fold_cdc_on_and_off()
    {
        var disabled = new CdcDisabled(when_folding_a_source.SourceId, "posthog_abc", "posthog_pub_abc", true, true, null, null,
            [new SchemaRef(when_folding_a_source.Orders.Id, "orders")], when_folding_a_source.Alice, "api", Given.Now);
        IReadOnlyList<IEvent> on = [.. when_folding_a_source.Stream(), new Event<CdcEnabled>(Enabled) { Version = 4 }];
        var enabled = SourceAsOf.Fold(on, Given.Registry)!;
        enabled.Cdc!.SlotName.ShouldBe("posthog_abc");
        enabled.JobInputs["cdc_enabled"]!.GetValue<bool>().ShouldBeTrue();
        enabled.Version.ShouldBe(4);

        var off = SourceAsOf.Fold([.. on, new Event<CdcDisabled>(disabled) { Version = 5 }], Given.Registry)!;
        off.Cdc.ShouldBeNull();
        off.JobInputs.ContainsKey("cdc_enabled").ShouldBeFalse();
        var orders = off.Schemas!.Single(s => s.Name == "orders");
        orders.ShouldSync.ShouldBeFalse();
        orders.SyncType.ShouldBeNull();

        var source = CdcSource();
        source.Cdc!.ConsistentPoint.ShouldBe("0/16B3748");
        source.Apply(disabled);
        source.Cdc.ShouldBeNull();
    }
}
