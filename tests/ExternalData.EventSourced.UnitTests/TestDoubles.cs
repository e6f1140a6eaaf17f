using System.Security.Claims;
using ExternalData.EventSourced.Infrastructure.Auth;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.Network;
using ExternalData.EventSourced.SourceTypes.Postgres;
using Microsoft.Extensions.Options;

namespace ExternalData.EventSourced.UnitTests;

internal sealed class FixedOptions<T>(T value) : IOptionsMonitor<T>
{
    public T CurrentValue => value;
    public T Get(string? name) => value;
    public IDisposable? OnChange(Action<T, string?> listener) => null;
}

internal static class Given
{
    public static readonly DateTimeOffset Now = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);

    public static HostPolicy HostPolicy(bool allowPrivateHosts = false) => new(new FixedOptions<NetworkOptions>(new NetworkOptions { AllowPrivateHosts = allowPrivateHosts }));

    public static PostgresSourceType Postgres => new(HostPolicy());

    public static SourceTypeRegistry Registry => new([Postgres]);

    public static ClaimsPrincipal User(string name = "alice") => new(new ClaimsIdentity(
        [new Claim(ApiKeyClaims.KeyId, "01a2176b-5003-7d90-8f49-c3ffe88af8df"), new Claim(ApiKeyClaims.KeyName, name)], "test"));
}
