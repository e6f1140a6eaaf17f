using ExternalData.EventSourced.SourceTypes.Discovery;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

public sealed class when_classifying_a_discovery_failure
{
    [Theory]
    [InlineData("canceling statement due to statement timeout", "Connection timed out while fetching schemas from the source.")]
    [InlineData("Connection refused (127.0.0.1:5432)", "Could not connect to the source. Check the host, port, and network access.")]
    [InlineData("could not translate host name \"db\" to address", "Could not resolve the source host.")]
    [InlineData("Network is unreachable", "Could not reach the source network.")]
    [InlineData("No route to host", "Could not reach the source host.")]
    [InlineData("password authentication failed for user \"x\"", "Could not authenticate with the source. Check the connection credentials.")]
    [InlineData("42501: permission denied for table payroll", "The source credentials do not have permission to fetch schemas.")]
    [InlineData("SSL/TLS connection is required", "SSL/TLS is required to connect to the source.")]
    [InlineData("something else entirely", "Could not fetch schemas from source.")]
    public void maps_the_failure_to_posthogs_text_without_repeating_it(string raw, string expected)
    {
        var check = DiscoveryErrors.Classify(new InvalidOperationException(raw));
        check.Ok.ShouldBeFalse();
        check.Message.ShouldBe(expected);
    }

    [Fact]
    public void the_exception_type_counts_too() =>
        DiscoveryErrors.Classify(new TimeoutException("read took too long")).Message.ShouldBe("Connection timed out while fetching schemas from the source.");
}
