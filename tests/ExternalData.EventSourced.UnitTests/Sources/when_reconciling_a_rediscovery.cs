using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes.Discovery;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_reconciling_a_rediscovery
{
    private static DiscoveredTable Table(string name, params string[] columns) => new(
        name, null, null, columns.Select(c => new DiscoveredColumn(c, "integer", false)).ToList(), [], false, false, true, false, false, 1, ["id"], null, null);

    private static SourceSchema Stored(string name, bool enabled = false, bool everEnabled = false, bool removed = false, params string[] columns) => new()
    {
        Id = Guid.NewGuid(), Name = name, Removed = removed, EverEnabled = everEnabled || enabled,
        Facts = SchemaSelection.FactsOf(Table(name, columns.Length == 0 ? ["id"] : columns)),
        Settings = SyncSettings.Disabled with { ShouldSync = enabled, SyncType = enabled ? SyncTypes.FullRefresh : null },
    };

    [Fact]
    public void new_tables_are_added_disabled_vanished_ones_removed_or_disabled_and_drift_is_named_for_enabled_tables()
    {
        var kept = Stored("kept", enabled: true, columns: ["id", "old"]);
        var quiet = Stored("quiet", columns: ["id", "old"]);
        var neverEnabled = Stored("never");
        var wasEnabled = Stored("was", enabled: true);
        var onceEnabled = Stored("once", everEnabled: true);

        var result = SchemaReconciliation.Reconcile([kept, quiet, neverEnabled, wasEnabled, onceEnabled],
            [Table("kept", "id", "new"), Table("quiet", "id", "new"), Table("fresh", "id")], () => Guid.Empty);

        result.Added.ShouldHaveSingleItem().Name.ShouldBe("fresh");
        result.Added[0].Settings.ShouldBe(SyncSettings.Disabled);
        result.Removed.Select(r => r.Name).ShouldBe(["never"]);
        result.Disabled.Select(r => r.Name).ShouldBe(["was"], "once was enabled before and is already disabled: nothing to do");
        result.FactsChanged.Select(f => f.Name).ShouldBe(["kept", "quiet"]);
        var drift = result.ColumnDrift.ShouldHaveSingleItem();
        (drift.Name, drift.Appeared.Single(), drift.Vanished.Single()).ShouldBe(("kept", "new", "old"));
        result.TotalTablesSeen.ShouldBe(3);
    }

    [Fact]
    public void a_returning_table_is_revived_and_a_bare_name_matches_its_qualified_form()
    {
        var gone = Stored("orders", removed: true);
        var qualified = Stored("public.customers");

        var result = SchemaReconciliation.Reconcile([gone, qualified], [Table("orders", "id"), Table("customers", "id")], Guid.NewGuid);

        result.Revived.ShouldHaveSingleItem().SchemaId.ShouldBe(gone.Id);
        result.Added.ShouldBeEmpty();
        result.Removed.ShouldBeEmpty();
        result.ChangesAnything.ShouldBeTrue();
        SchemaReconciliation.Reconcile([qualified], [Table("customers", "id")], Guid.NewGuid).ChangesAnything.ShouldBeFalse();
    }

    [Theory]
    [InlineData("Discount", null, true, false, "Discount can only be synced via webhooks — pick the Webhook sync method.")]
    [InlineData("Charge", "incremental", false, false, "Charge does not support incremental sync")]
    [InlineData("orders", "cdc", false, false, "CDC is not enabled for this source")]
    [InlineData("orders", "cdc", false, true, null)]
    [InlineData("orders", "xmin", false, false, null)]
    [InlineData("orders", "full_refresh", false, false, null)]
    public void one_sync_type_rule_module_judges_create_and_bulk_update(string table, string? syncType, bool webhookOnly, bool cdcEnabled, string? refusal)
    {
        var facts = new DiscoveryFacts(false, true, true, webhookOnly, webhookOnly, null, null);
        SyncTypeRules.Refusal(table, syncType, facts, cdcEnabled).ShouldBe(refusal);
    }

    [Fact]
    public void xmin_needs_a_table_with_a_primary_key()
    {
        var keyless = new DiscoveryFacts(true, true, SupportsCdc: false, false, false, null, null);
        SyncTypeRules.Refusal("events", SyncTypes.Xmin, keyless, cdcEnabled: false).ShouldBe("xmin sync needs a Postgres table with a primary key; 'events' has none.");
    }
}
