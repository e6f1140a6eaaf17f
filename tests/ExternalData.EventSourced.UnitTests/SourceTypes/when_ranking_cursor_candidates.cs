using ExternalData.EventSourced.SourceTypes.Discovery;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

public sealed class when_ranking_cursor_candidates
{
    private static IncrementalField Field(string name) => new(name, "timestamp", name, "timestamp");

    [Fact]
    public void update_tracking_columns_come_first_then_discovery_order()
    {
        var ranked = IncrementalFieldRanking.Rank([Field("id"), Field("created_at"), Field("seq"), Field("UpdatedAt"), Field("updated_at")]);

        ranked.Select(f => f.Field).ShouldBe(["updated_at", "UpdatedAt", "created_at", "id", "seq"]);
        IncrementalFieldRanking.PickDefault([Field("id"), Field("created")])!.Field.ShouldBe("created");
        IncrementalFieldRanking.PickDefault([Field("seq")])!.Field.ShouldBe("seq");
        IncrementalFieldRanking.PickDefault([]).ShouldBeNull();
    }
}
