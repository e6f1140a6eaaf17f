using ExternalData.EventSourced.SourceTypes.Postgres;
using ExternalData.EventSourced.SourceTypes.Sync;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

/// <summary>A run reads the table's catalog once: the enabled columns are taken from every column, which the row filters
/// may name too.</summary>
public sealed class when_narrowing_a_table_to_its_enabled_columns
{
    private static readonly TableShape All = new("public.orders",
        [new("id", "bigint", false, "\"id\""), new("email", "text", true, "\"email\""), new("status", "text", true, "\"status\"::text")],
        "id", ["id"]);

    [Fact]
    public void no_enabled_columns_means_every_column()
    {
        PostgresTableShape.Enabled(All, null).ShouldBeSameAs(All);
        PostgresTableShape.Enabled(All, []).ShouldBeSameAs(All);
    }

    [Fact]
    public void the_enabled_columns_are_kept_in_the_tables_order_and_the_page_column_only_if_enabled()
    {
        var narrowed = PostgresTableShape.Enabled(All, ["status", "id"]);
        narrowed.Columns.Select(c => c.Name).ShouldBe(["id", "status"]);
        narrowed.PageColumn.ShouldBe("id");
        narrowed.PrimaryKey.ShouldBe(["id"]);

        var withoutKey = PostgresTableShape.Enabled(All, ["email"]);
        withoutKey.Columns.Select(c => c.Name).ShouldBe(["email"]);
        withoutKey.PageColumn.ShouldBeNull("a run cannot page on a column it does not read");
        All.Columns.Count.ShouldBe(3, "every column stays for the row filters");
    }

    [Fact]
    public void an_enabled_column_gone_upstream_fails_the_run_and_says_what_to_do()
    {
        var failure = Should.Throw<SourceReadException>(() => PostgresTableShape.Enabled(All, ["id", "ghost"]));
        failure.Retryable.ShouldBeFalse();
        failure.ErrorClass.ShouldBe("column_missing");
        failure.Message.ShouldBe("Enabled columns are gone from 'public.orders': ghost. Refresh the source's schemas and update enabled_columns.");
    }
}
