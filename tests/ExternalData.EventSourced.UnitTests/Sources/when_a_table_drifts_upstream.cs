using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes.Sync;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

/// <summary>Schema evolution between runs (SYNC.md §5), decided from the warehouse table's columns and upstream's alone.</summary>
public sealed class when_a_table_drifts_upstream
{
    private static WarehouseTableColumn Held(string name, string type) => new(name, type, true);

    private static WarehouseColumn Upstream(string name, string type) => new(name, type, true, name);

    [Theory]
    [InlineData("integer", "bigint")]
    [InlineData("smallint", "integer")]
    [InlineData("smallint", "bigint")]
    [InlineData("integer", "numeric")]
    [InlineData("integer", "numeric(12,2)")]
    [InlineData("real", "double precision")]
    [InlineData("character varying(10)", "character varying(40)")]
    [InlineData("character varying(10)", "character varying")]
    [InlineData("character varying(10)", "text")]
    [InlineData("numeric(8,2)", "numeric(12,2)")]
    [InlineData("numeric(8,2)", "numeric(10,4)")]
    [InlineData("numeric(8,2)", "numeric")]
    public void a_type_that_holds_every_old_value_widens_the_column_in_place(string before, string after)
    {
        WarehouseColumnDrift.Fits(before, after).ShouldBeTrue();
        var plan = WarehouseColumnDrift.Plan([Held("c", before)], [Upstream("c", after)]);
        plan.Widened.ShouldBe([("c", before, after)]);
        plan.Added.ShouldBeEmpty();
    }

    [Theory]
    [InlineData("bigint", "integer")]
    [InlineData("character varying(40)", "character varying(10)")]
    [InlineData("numeric(12,2)", "numeric(8,2)")]
    [InlineData("double precision", "real")]
    public void a_narrowing_upstream_keeps_the_wider_warehouse_column(string warehouse, string upstream) =>
        WarehouseColumnDrift.Plan([Held("c", warehouse)], [Upstream("c", upstream)]).None.ShouldBeTrue();

    [Theory]
    [InlineData("character varying(40)", "integer")]
    [InlineData("text", "jsonb")]
    [InlineData("integer", "text")]
    [InlineData("bigint", "numeric(10,0)")]
    [InlineData("numeric(8,2)", "numeric(8,4)")]
    [InlineData("timestamp without time zone", "timestamp with time zone")]
    [InlineData("integer", "integer[]")]
    public void any_other_change_is_incompatible_and_names_the_column(string warehouse, string upstream)
    {
        var refused = Should.Throw<IncompatibleColumnChangeException>(() => WarehouseColumnDrift.Plan([Held("c", warehouse)], [Upstream("c", upstream)]));
        refused.Column.ShouldBe("c");
        refused.Message.ShouldStartWith($"The column 'c' changed type upstream from {warehouse} to {upstream},");
    }

    [Fact]
    public void a_new_column_is_added_and_a_dropped_one_kept_but_never_the_services_own()
    {
        var plan = WarehouseColumnDrift.Plan(
            [Held("id", "integer"), Held("gone", "text"), Held("_ph_synced_at", "timestamp with time zone")],
            [Upstream("id", "integer"), Upstream("extra", "jsonb")]);
        plan.Added.Select(c => c.Name).ShouldBe(["extra"]);
        plan.Kept.ShouldBe(["gone"]);
        plan.Widened.ShouldBeEmpty();
    }
}
