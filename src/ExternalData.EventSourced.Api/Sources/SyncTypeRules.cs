namespace ExternalData.EventSourced.Sources;

/// <summary>
/// Which sync type a table may use: the one rule module behind create, bulk update and setup's defaults. Each
/// returns the reason in PostHog's words, or null when the choice is fine.
/// </summary>
public static class SyncTypeRules
{
    /// <summary>Can <paramref name="table"/> sync with <paramref name="syncType"/>? <paramref name="cdcEnabled"/> is
    /// whether the source has CDC turned on.</summary>
    public static string? Refusal(string table, string? syncType, DiscoveryFacts facts, bool cdcEnabled) => syncType switch
    {
        _ when facts.WebhookOnly && syncType != SyncTypes.Webhook => $"{table} can only be synced via webhooks — pick the Webhook sync method.",
        SyncTypes.Cdc when !cdcEnabled => "CDC is not enabled for this source",
        SyncTypes.Cdc when !facts.SupportsCdc => $"CDC requires a primary key on table '{table}'. Add a primary key on the source table and retry.",
        // PostHog gates xmin behind a flag; here it is open wherever it works: a Postgres table with a primary key to merge on.
        SyncTypes.Xmin when !facts.SupportsCdc => $"xmin sync needs a Postgres table with a primary key; '{table}' has none.",
        SyncTypes.Webhook when !facts.SupportsWebhooks => $"{table} does not support webhook sync",
        SyncTypes.Incremental when !facts.SupportsIncremental => $"{table} does not support incremental sync",
        SyncTypes.Append when !facts.SupportsAppend => $"{table} does not support append-only sync",
        _ => null,
    };

    /// <summary>
    /// Where PostHog's create and bulk update really differ, the difference is here and nowhere else (1 of 2):
    /// create (ref §5.2 steps 14 and 17) judges only the entries it enables, since a disabled entry's sync type is
    /// "not set up" and PostHog stores it as given (a CDC choice on a disabled entry is stored as null); bulk update
    /// (ref §5.21) judges a sync type whenever the key is present, enabled or not, because it changes a stored schema.
    /// </summary>
    public static bool JudgedAtCreate(bool shouldSync) => shouldSync;

    public const string NotSetUp = "Sync type must be set up first before enabling schema";

    /// <summary>
    /// An enabled table with no sync type, the difference (2 of 2). Bulk update and a schema PATCH refuse it in
    /// PostHog's words (ref §5.21): the caller is changing a stored schema and can say how it syncs. PostHog's create
    /// (ref §5.2 step 17) stores the entry as given and its pipeline then runs a table without a sync type as a full
    /// refresh; here create records that full refresh, so every enabled schema says the sync type it runs with.
    /// A direct source's tables never sync, so neither applies to them.
    /// </summary>
    public static string? RefusalToEnable(bool shouldSync, string? syncType, bool direct) =>
        !direct && shouldSync && syncType is null ? NotSetUp : null;

    /// <summary>The sync type create records for an entry (see <see cref="RefusalToEnable"/>).</summary>
    public static string? AtCreate(bool shouldSync, string? requested, bool direct) => direct ? null
        : requested == SyncTypes.Cdc && !shouldSync ? null   // a CDC choice on a disabled table means "not set up"
        : shouldSync ? requested ?? SyncTypes.FullRefresh
        : requested;

    /// <summary>A reason said on its own (create answers one table at a time) ends as a sentence.</summary>
    public static string AsSentence(string reason) => reason.EndsWith('.') ? reason : reason + ".";

    /// <summary>
    /// The settings a table gets when nobody chose any (ref §7.1, §7.2; setup uses it): incremental where a cursor
    /// exists (<c>updated_at</c>-like before <c>created_at</c>-like before any other candidate, such as an integer key),
    /// else append, else full refresh; never CDC or webhook. Webhook-only tables, tables the credentials cannot read
    /// and tables the source says not to sync by default start disabled.
    /// </summary>
    public static SyncSettings DefaultFor(SourceTypes.Discovery.DiscoveredTable table)
    {
        if (table.WebhookOnly || !table.ShouldSyncDefault || table.PermissionError is not null) return SyncSettings.Disabled with { SyncFrequency = SchemaSelection.DefaultFrequency };

        var cursor = SourceTypes.Discovery.IncrementalFieldRanking.PickDefault(table.IncrementalFields);
        // A table whose incremental sync goes beyond PostHog's (Stripe's) keeps PostHog's default.
        var syncType = table.SupportsIncremental && table.IncrementalByDefault && cursor is not null ? SyncTypes.Incremental
            : table.SupportsAppend && cursor is not null ? SyncTypes.Append
            : SyncTypes.FullRefresh;
        var cursorBased = syncType != SyncTypes.FullRefresh;
        return new SyncSettings(
            ShouldSync: true,
            SyncType: syncType,
            IncrementalField: cursorBased ? cursor!.Field : null,
            IncrementalFieldType: cursorBased ? (string.IsNullOrEmpty(cursor!.FieldType) ? cursor.Type : cursor.FieldType) : null,
            IncrementalFieldLookbackSeconds: null,
            PrimaryKeyColumns: table.DetectedPrimaryKeys,
            SyncFrequency: SchemaSelection.DefaultFrequency,
            SyncTimeOfDay: null,
            CdcTableMode: null,
            EnabledColumns: null,
            RowFilters: null);
    }
}
