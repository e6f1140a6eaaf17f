namespace ExternalData.EventSourced.SourceTypes;

/// <summary>The source types this service can really talk to, keyed by their PostHog name (e.g. "Postgres").</summary>
public sealed class SourceTypeRegistry(IEnumerable<ISourceType> sourceTypes)
{
    private readonly Dictionary<string, ISourceType> _byName =
        sourceTypes.ToDictionary(t => t.Definition.Name, StringComparer.Ordinal);

    public IReadOnlyCollection<ISourceType> All => _byName.Values;

    public bool TryGet(string? name, out ISourceType sourceType)
    {
        sourceType = null!;
        return name is not null && _byName.TryGetValue(name, out sourceType!);
    }

    public ISourceType Get(string name) =>
        _byName.TryGetValue(name, out var type) ? type : throw new KeyNotFoundException($"Unknown source type: {name}");
}
