using ExternalData.EventSourced.Sources;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

/// <summary>A chunk of a CDC table's changes folds to the last state of each row (SYNC.md §3.6, ADR 0047).</summary>
public sealed class when_folding_cdc_changes
{
    private static readonly string[] Columns = ["id", "kind", "big"];
    private static readonly string[] Key = ["id"];
    private static readonly DateTimeOffset At = new(2026, 12, 6, 0, 0, 0, TimeSpan.Zero);

    private static RowChange Change(ChangeKind kind, string?[] values, bool[]? unchanged = null, string?[]? oldKey = null) =>
        new("public.items", kind, Columns, Key, values, unchanged ?? new bool[values.Length], oldKey);

    private static TableChanges Fold(params RowChange[] changes)
    {
        var table = new TableChanges("public.items", Columns, Key);
        foreach (var change in changes) table.Add(change, At);
        return table;
    }

    [Fact]
    public void an_update_that_left_a_toasted_value_alone_takes_it_from_the_earlier_change_of_the_chunk()
    {
        var row = Fold(
                Change(ChangeKind.Insert, ["1", "a", "long text"]),
                Change(ChangeKind.Update, ["1", "b", null], [false, false, true]))
            .Rows.ShouldHaveSingleItem();
        row.Values.ShouldBe(["1", "b", "long text"]);
        row.Unknown.ShouldBe([false, false, false]);
    }

    [Fact]
    public void an_untouched_toasted_value_with_no_earlier_change_stays_unknown_so_the_warehouse_keeps_its_own()
    {
        var row = Fold(Change(ChangeKind.Update, ["1", "b", null], [false, false, true])).Rows.ShouldHaveSingleItem();
        row.Unknown.ShouldBe([false, false, true]);
        row.Deleted.ShouldBeFalse();
    }

    [Fact]
    public void a_key_only_delete_keeps_the_last_values_it_does_not_carry()
    {
        var afterUpdate = Fold(Change(ChangeKind.Update, ["5", "last words", "x"]), Change(ChangeKind.Delete, ["5", null, null])).Rows.ShouldHaveSingleItem();
        afterUpdate.Deleted.ShouldBeTrue();
        afterUpdate.Values.ShouldBe(["5", "last words", "x"]);

        var alone = Fold(Change(ChangeKind.Delete, ["6", null, null])).Rows.ShouldHaveSingleItem();
        alone.Deleted.ShouldBeTrue();
        alone.Unknown.ShouldBe([false, true, true], "the warehouse row's own values stay");
    }

    [Fact]
    public void a_changed_key_is_a_delete_of_the_old_key_and_the_row_under_the_new_one()
    {
        var rows = Fold(Change(ChangeKind.Update, ["8", "moved", "v"], oldKey: ["7"])).Rows.OrderBy(r => r.Values[0]).ToList();
        rows.Count.ShouldBe(2);
        rows[0].Values[0].ShouldBe("7");
        rows[0].Deleted.ShouldBeTrue();
        rows[0].Unknown.ShouldBe([false, true, true]);
        rows[1].Values.ShouldBe(["8", "moved", "v"]);
        rows[1].Deleted.ShouldBeFalse();
    }

    [Fact]
    public void a_row_inserted_again_after_its_delete_is_live()
    {
        var row = Fold(Change(ChangeKind.Delete, ["9", null, null]), Change(ChangeKind.Insert, ["9", "back", null])).Rows.ShouldHaveSingleItem();
        row.Deleted.ShouldBeFalse();
        row.Values.ShouldBe(["9", "back", null]);
        row.Unknown.ShouldBe([false, false, false], "an insert says every value, NULL included");
    }

    [Fact]
    public void a_chunk_knows_whether_any_row_keeps_a_warehouse_value()
    {
        Fold(Change(ChangeKind.Update, ["1", "a", "x"]), Change(ChangeKind.Insert, ["2", "b", null])).HasUnknown
            .ShouldBeFalse("every value is known: the apply takes them as they are");
        Fold(Change(ChangeKind.Update, ["1", "a", "x"]), Change(ChangeKind.Update, ["2", "b", null], [false, false, true])).HasUnknown
            .ShouldBeTrue("row 2's untouched TOAST value is the warehouse's");
        Fold(Change(ChangeKind.Delete, ["3", null, null])).HasUnknown.ShouldBeTrue("a key-only delete keeps the warehouse's values");
        Fold(Change(ChangeKind.Insert, ["1", "a", "long"]), Change(ChangeKind.Update, ["1", "b", null], [false, false, true])).HasUnknown
            .ShouldBeFalse("the untouched value was known from the chunk's own insert");
    }
}
