using ExternalData.EventSourced.SourceTypes;

namespace ExternalData.EventSourced.Sources;

public static class SourceDetailsCapabilities
{
    /// <summary>Capability flags describe the source type as this build knows it, so they are filled at read
    /// time rather than frozen into events.</summary>
    public static SourceDetails WithCapabilitiesOf(this SourceDetails details, ISourceType? type)
    {
        details.SupportsWebhooks = type?.Definition.Capabilities.Webhooks ?? false;
        details.SupportsColumnSelection = type?.Definition.Capabilities.ColumnSelection ?? false;
        return details;
    }

    public static SourceDetails WithCapabilitiesFrom(this SourceDetails details, SourceTypeRegistry registry) =>
        details.WithCapabilitiesOf(registry.TryGet(details.SourceType, out var type) ? type : null);
}
