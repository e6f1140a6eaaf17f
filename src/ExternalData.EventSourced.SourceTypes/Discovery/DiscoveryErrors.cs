namespace ExternalData.EventSourced.SourceTypes.Discovery;

/// <summary>
/// PostHog's generic classification of a discovery failure (ref §5.23), used when a source type's own mapping has
/// nothing better: case-insensitive patterns over "&lt;ExceptionType&gt;: &lt;message&gt;", in PostHog's order.
/// The raw text is only matched, never returned.
/// </summary>
public static class DiscoveryErrors
{
    private static readonly (string[] Patterns, string Code, string Message)[] Rules =
    [
        (["timeout", "timed out"], "discovery_timeout", "Connection timed out while fetching schemas from the source."),
        (["connection refused", "could not connect"], "connection_refused", "Could not connect to the source. Check the host, port, and network access."),
        (["could not translate host name", "name or service not known"], "host_unresolvable", "Could not resolve the source host."),
        (["network is unreachable"], "network_unreachable", "Could not reach the source network."),
        (["no route to host"], "host_unreachable", "Could not reach the source host."),
        (["access denied", "authentication failed", "password authentication failed", "unauthorized"], "invalid_credentials",
            "Could not authenticate with the source. Check the connection credentials."),
        (["forbidden", "permission denied"], "permission_denied", "The source credentials do not have permission to fetch schemas."),
        (["ssl/tls connection is required"], "ssl_required", "SSL/TLS is required to connect to the source."),
        (["could not establish session to ssh gateway"], "ssh_failed", "Could not establish an SSH tunnel to the source."),
    ];

    public static SourceCheck Classify(Exception e)
    {
        var text = $"{e.GetType().Name}: {e.Message}";
        foreach (var (patterns, code, message) in Rules)
        {
            if (patterns.Any(p => text.Contains(p, StringComparison.OrdinalIgnoreCase))) return SourceCheck.Failed(code, message);
        }

        return SourceCheck.Failed("discovery_failed", "Could not fetch schemas from source.");
    }
}
