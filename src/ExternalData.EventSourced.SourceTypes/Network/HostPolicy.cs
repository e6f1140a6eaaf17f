using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;

namespace ExternalData.EventSourced.SourceTypes.Network;

public sealed class NetworkOptions
{
    public const string Section = "ExternalData:Network";

    /// <summary>Allow loopback and private addresses (a local database in development). Never in production.</summary>
    public bool AllowPrivateHosts { get; set; }
}

/// <summary>The verdict on a user-given host: allowed (with the addresses it was judged on) or refused with a text.</summary>
public sealed record HostVerdict(bool Allowed, string? Code, string? Message, IReadOnlyList<IPAddress> Addresses)
{
    public static HostVerdict Allow(IReadOnlyList<IPAddress> addresses) => new(true, null, null, addresses);
    public static HostVerdict Refuse(string code, string message) => new(false, code, message, []);
}

public interface IHostPolicy
{
    Task<HostVerdict> CheckAsync(string host, CancellationToken ct);
}

/// <summary>
/// Refuses hosts that resolve to internal addresses before any outbound connection (ref §11.1, API.md §1.6),
/// so a caller cannot point the service at its own network or the cloud metadata endpoint.
/// </summary>
public sealed class HostPolicy(IOptionsMonitor<NetworkOptions> options) : IHostPolicy
{
    public const string InternalAddressText =
        "This host points to an internal or private IP address, which PostHog can't reach. Use a host that's reachable from the public internet.";

    public const string MalformedText =
        "Enter a single hostname or IP address for the host, without a port, path, comma, space or trailing dot.";

    public const string NonAsciiText =
        "This host has characters outside ASCII. Enter its punycode form instead, the spelling that starts with xn--.";

    public async Task<HostVerdict> CheckAsync(string host, CancellationToken ct)
    {
        host = host.Trim();
        if (host.Any(c => c > 127)) return HostVerdict.Refuse("host_not_ascii", NonAsciiText);

        var literal = host.StartsWith('[') && host.EndsWith(']') ? host[1..^1] : host;
        if (IPAddress.TryParse(literal, out var ip))
        {
            return IsAllowed(ip) ? HostVerdict.Allow([ip]) : HostVerdict.Refuse("host_internal", InternalAddressText);
        }

        if (!IsWellFormedHostName(host)) return HostVerdict.Refuse("host_malformed", MalformedText);

        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) || host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
        {
            return options.CurrentValue.AllowPrivateHosts
                ? HostVerdict.Allow([IPAddress.Loopback])
                : HostVerdict.Refuse("host_internal", InternalAddressText);
        }

        IPAddress[] addresses;
        try
        {
            addresses = await Dns.GetHostAddressesAsync(host, ct);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TryAgain)
        {
            return HostVerdict.Refuse("host_resolution_temporary", $"Temporary failure resolving the host '{host}'. Try again in a moment.");
        }
        catch (SocketException)
        {
            addresses = [];
        }

        if (addresses.Length == 0)
        {
            return HostVerdict.Refuse("host_unresolvable",
                $"Couldn't resolve the host '{host}'. Check that it's spelled correctly and reachable from the public internet.");
        }

        return addresses.All(IsAllowed) ? HostVerdict.Allow(addresses) : HostVerdict.Refuse("host_internal", InternalAddressText);
    }

    private bool IsAllowed(IPAddress address) => options.CurrentValue.AllowPrivateHosts || IsPublic(address);

    private static bool IsWellFormedHostName(string host)
    {
        if (host.Length is 0 or > 253 || host.EndsWith('.')) return false;
        return host.Split('.').All(label =>
            label.Length is > 0 and <= 63
            && !label.StartsWith('-') && !label.EndsWith('-')
            && label.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'));
    }

    /// <summary>Whether an address is globally routable. IPv6 forms that embed an IPv4 address are judged by it.</summary>
    public static bool IsPublic(IPAddress address)
    {
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            if (address.IsIPv4MappedToIPv6) return IsPublic(address.MapToIPv4());
            var b = address.GetAddressBytes();
            if (b.Take(12).All(x => x == 0)) return false;                                      // ::, ::1, IPv4-compatible ::a.b.c.d
            if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b)                     // 64:ff9b::/96 NAT64
                return IsPublic(new IPAddress(b[12..16]));
            if (b[0] == 0x20 && b[1] == 0x02) return IsPublic(new IPAddress(b[2..6]));          // 2002::/16 6to4
            if ((b[0] & 0xe0) != 0x20) return false;                                             // only 2000::/3 is global unicast
            if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02) return false;                       // 2001::/23 IETF special (Teredo, ORCHID…)
            if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return false;     // 2001:db8::/32 documentation
            return true;
        }

        var v = address.GetAddressBytes();
        return !(v[0] == 0                                        // 0.0.0.0/8 "this network"
                 || v[0] == 10                                    // private
                 || v[0] == 100 && (v[1] & 0xc0) == 64            // 100.64.0.0/10 CGNAT
                 || v[0] == 127                                   // loopback
                 || v[0] == 169 && v[1] == 254                    // link-local, incl. 169.254.169.254 metadata
                 || v[0] == 172 && (v[1] & 0xf0) == 16            // private
                 || v[0] == 192 && v[1] == 0 && v[2] == 0         // IETF protocol assignments
                 || v[0] == 192 && v[1] == 0 && v[2] == 2         // TEST-NET-1
                 || v[0] == 192 && v[1] == 88 && v[2] == 99       // 6to4 relay anycast
                 || v[0] == 192 && v[1] == 168                    // private
                 || v[0] == 198 && (v[1] & 0xfe) == 18            // benchmarking
                 || v[0] == 198 && v[1] == 51 && v[2] == 100      // TEST-NET-2
                 || v[0] == 203 && v[1] == 0 && v[2] == 113       // TEST-NET-3
                 || v[0] >= 224);                                 // multicast, reserved, broadcast
    }
}
