namespace ExternalData.EventSourced.SourceTypes.Discovery;

/// <summary>A table or endpoint a source exposes, as discovery sees it (ref §6.1 SourceSchema).</summary>
public sealed record DiscoveredTable(
    string Name,
    string? Label,
    string? Description,
    IReadOnlyList<DiscoveredColumn> Columns,
    IReadOnlyList<IncrementalField> IncrementalFields,
    bool SupportsIncremental,
    bool SupportsAppend,
    bool SupportsCdc,
    bool SupportsWebhooks,
    bool WebhookOnly,
    long? RowEstimate,
    IReadOnlyList<string>? DetectedPrimaryKeys,
    string? PermissionError,
    string? RlsWarning,
    bool ShouldSyncDefault = true,
    bool IncrementalByDefault = true);

public sealed record DiscoveredColumn(string Name, string DataType, bool IsNullable);

/// <summary>A column usable as a sync cursor. <c>Type</c> is the UI type, <c>FieldType</c> the source's.</summary>
public sealed record IncrementalField(string Label, string Type, string Field, string FieldType, bool? Nullable = null, bool? IsIndexed = null);

/// <summary>Discovery outcome: the tables, or a problem in the words a user can act on (ref §5.23).</summary>
public sealed record DiscoveryResult(IReadOnlyList<DiscoveredTable> Tables, SourceCheck Check)
{
    public static DiscoveryResult Of(IReadOnlyList<DiscoveredTable> tables) => new(tables, SourceCheck.Success);
    public static DiscoveryResult Failed(string code, string message) => new([], SourceCheck.Failed(code, message));
}

/// <summary>Orders cursor candidates the way PostHog does (ref §7.1): update-tracking columns first.</summary>
public static class IncrementalFieldRanking
{
    private static readonly string[] Preferred =
        ["updated_at", "updatedat", "modified_at", "modifiedat", "last_modified", "updated", "modified", "created_at", "createdat", "created"];

    public static IReadOnlyList<IncrementalField> Rank(IEnumerable<IncrementalField> candidates)
    {
        var list = candidates.ToList();
        return list
            .Select((field, index) => (field, index, rank: Array.IndexOf(Preferred, field.Field.ToLowerInvariant())))
            .OrderBy(x => x.rank < 0 ? int.MaxValue : x.rank)
            .ThenBy(x => x.index)
            .Select(x => x.field)
            .ToList();
    }

    /// <summary>The default cursor: the first preferred candidate, else the first one.</summary>
    public static IncrementalField? PickDefault(IEnumerable<IncrementalField> candidates) =>
        Rank(candidates.Where(c => !string.IsNullOrEmpty(c.Field))).FirstOrDefault();
}
