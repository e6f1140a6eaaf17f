using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// The write model of a source: what the deciders need to judge a source-level command. Folded from its events;
/// kept as an inline snapshot so a write loads one small document. It holds no tables: per-table state lives in
/// <see cref="SourceSchema"/> documents, which a command loads only for the tables it touches (ADR 0016).
/// Apply methods are public: Marten 9's source generator silently skips private ones (STACK.md G6).
/// </summary>
public sealed class Source
{
    public Guid Id { get; set; }
    // Marten sets this itself: the stream version, used for optimistic concurrency and If-Match.
    public int Version { get; set; }
    public string ProjectId { get; set; } = "";
    public string SourceType { get; set; } = "";
    public string AccessMethod { get; set; } = AccessMethods.Warehouse;
    public string? Prefix { get; set; }
    public string? Description { get; set; }
    public bool DirectQueryEnabled { get; set; }
    public JsonObject JobInputs { get; set; } = new();
    public SealedSecrets? Secrets { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>Null while change data capture is off.</summary>
    public CdcSettings? Cdc { get; set; }
    /// <summary>Null until a webhook registration was attempted.</summary>
    public WebhookState? Webhook { get; set; }

    public bool IsDirect => AccessMethod == AccessMethods.Direct;

    public static Source Create(SourceCreated e) => new()
    {
        Id = e.SourceId,
        ProjectId = e.ProjectId,
        SourceType = e.SourceType,
        AccessMethod = e.AccessMethod,
        Prefix = e.Prefix,
        Description = e.Description,
        DirectQueryEnabled = e.DirectQueryEnabled,
        JobInputs = e.JobInputs,
        Secrets = e.Secrets,
        CreatedAt = e.CreatedAt,
    };

    public void Apply(SourceUpdated e)
    {
        Prefix = e.Prefix;
        Description = e.Description;
        DirectQueryEnabled = e.DirectQueryEnabled;
        JobInputs = e.JobInputs;
        Secrets = e.Secrets ?? Secrets;
    }

    // Table events change nothing the source-level deciders read, but they move the stream version the snapshot
    // carries (If-Match is checked against it): Marten only advances a snapshot through events it has a method for.
    public void Apply(SchemaAdded e) { }
    public void Apply(SchemasBulkUpdated e) { }
    public void Apply(SchemasRefreshed e) { }
    public void Apply(CdcPublicationTablesChanged e) { }

    public void Apply(WebhookRegistered e) => Webhook = WebhookState.Apply(Webhook, e);
    public void Apply(WebhookRegistrationFailed e) => Webhook = WebhookState.Apply(Webhook, e);
    public void Apply(WebhookDeleted e) => Webhook = WebhookState.Apply(Webhook, e);

    public void Apply(CdcEnabled e) => Cdc = CdcSettings.From(e);
    public void Apply(CdcDisabled e) => Cdc = null;
    public void Apply(CdcSettingsChanged e) => Cdc = Cdc?.With(e);

    // A deleted source has no write model: later commands on it answer 404.
    public bool ShouldDelete(SourceDeleted e) => true;
}

public static class AccessMethods
{
    public const string Warehouse = "warehouse";
    public const string Direct = "direct";
    public static readonly string[] All = [Warehouse, Direct];
}

public static class SyncTypes
{
    public const string FullRefresh = "full_refresh";
    public const string Incremental = "incremental";
    public const string Append = "append";
    public const string Webhook = "webhook";
    public const string Cdc = "cdc";
    public const string Xmin = "xmin";
    public static readonly string[] All = [FullRefresh, Incremental, Append, Webhook, Cdc, Xmin];
}
