using ExternalData.EventSourced.Sources;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

public sealed class when_checking_a_prefix
{
    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("prod")]
    [InlineData("_prod_")]
    [InlineData("Prod_2")]
    public void accepts_identifiers(string? prefix) => SourcePrefix.CheckCharacters(prefix).ShouldBeNull();

    [Theory]
    [InlineData("___", "Prefix cannot consist of only underscores")]
    [InlineData("9lives", "Prefix must contain only letters, numbers, and underscores, and start with a letter or underscore")]
    [InlineData("pro-d", "Prefix must contain only letters, numbers, and underscores, and start with a letter or underscore")]
    [InlineData("pröd", "Prefix must contain only letters, numbers, and underscores, and start with a letter or underscore")]
    public void refuses_the_rest(string prefix, string detail) => SourcePrefix.CheckCharacters(prefix)!.Detail.ShouldBe(detail);

    [Fact]
    public void one_source_without_prefix_and_each_prefix_once_per_type()
    {
        SourcePrefix.CheckAvailable(null, []).ShouldBeNull();
        SourcePrefix.CheckAvailable(null, ["prod"]).ShouldBeNull();
        SourcePrefix.CheckAvailable(null, [null, "prod"])!.Detail.ShouldBe("Source type already exists. Prefix is required");
        SourcePrefix.CheckAvailable("prod", [null, "prod"])!.Detail.ShouldBe("Prefix already exists");
        SourcePrefix.CheckAvailable("Prod", ["prod"]).ShouldBeNull();
    }
}
