using System.Net;
using ExternalData.EventSourced.SourceTypes.Network;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

public sealed class when_judging_a_host
{
    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("127.8.9.10")]
    [InlineData("10.0.0.5")]
    [InlineData("172.16.0.1")]
    [InlineData("172.31.255.255")]
    [InlineData("192.168.1.1")]
    [InlineData("169.254.169.254")]
    [InlineData("100.64.0.1")]
    [InlineData("0.0.0.0")]
    [InlineData("224.0.0.1")]
    [InlineData("240.0.0.1")]
    [InlineData("255.255.255.255")]
    [InlineData("198.18.0.1")]
    [InlineData("::1")]
    [InlineData("::")]
    [InlineData("::ffff:127.0.0.1")]
    [InlineData("::ffff:169.254.169.254")]
    [InlineData("::ffff:10.0.0.1")]
    [InlineData("fe80::1")]
    [InlineData("fc00::1")]
    [InlineData("fd12:3456::1")]
    [InlineData("ff02::1")]
    [InlineData("2002:7f00:1::1")]
    [InlineData("64:ff9b::a9fe:a9fe")]
    [InlineData("2001:db8::1")]
    public async Task refuses_an_internal_address(string address)
    {
        var verdict = await Given.HostPolicy().CheckAsync(address, CancellationToken.None);

        verdict.Allowed.ShouldBeFalse();
        verdict.Message.ShouldBe(HostPolicy.InternalAddressText);
    }

    [Theory]
    [InlineData("8.8.8.8")]
    [InlineData("172.32.0.1")]
    [InlineData("100.128.0.1")]
    [InlineData("2606:4700:4700::1111")]
    [InlineData("::ffff:8.8.8.8")]
    [InlineData("2002:0808:0808::1")]
    public void allows_a_public_address(string address) => HostPolicy.IsPublic(IPAddress.Parse(address)).ShouldBeTrue();

    [Theory]
    [InlineData("localhost")]
    [InlineData("LOCALHOST")]
    [InlineData("db.localhost")]
    public async Task refuses_localhost_by_name(string host) =>
        (await Given.HostPolicy().CheckAsync(host, CancellationToken.None)).Code.ShouldBe("host_internal");

    [Theory]
    [InlineData("db.example.com:5432")]
    [InlineData("db example.com")]
    [InlineData("db.example.com.")]
    [InlineData("a,b")]
    [InlineData("http://db.example.com")]
    [InlineData("-bad.example.com")]
    public async Task refuses_a_malformed_host(string host) =>
        (await Given.HostPolicy().CheckAsync(host, CancellationToken.None)).Message.ShouldBe(HostPolicy.MalformedText);

    [Fact]
    public async Task refuses_non_ascii_and_asks_for_punycode() =>
        (await Given.HostPolicy().CheckAsync("bücher.example", CancellationToken.None)).Message.ShouldBe(HostPolicy.NonAsciiText);

    [Fact]
    public async Task a_name_that_does_not_resolve_is_refused()
    {
        var verdict = await Given.HostPolicy().CheckAsync("nothing-here.invalid", CancellationToken.None);
        verdict.Message.ShouldBe("Couldn't resolve the host 'nothing-here.invalid'. Check that it's spelled correctly and reachable from the public internet.");
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("localhost")]
    [InlineData("10.0.0.5")]
    public async Task development_allows_private_hosts(string host) =>
        (await Given.HostPolicy(allowPrivateHosts: true).CheckAsync(host, CancellationToken.None)).Allowed.ShouldBeTrue();
}
