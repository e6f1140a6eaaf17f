using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using JasperFx.Events;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// A source: the one document per source, folded from its stream and stored inline. The deciders judge commands on
/// it, and list and retrieve read it (as <see cref="SourceDetails"/>, its public face), so a write loads one document
/// and its inline projection applies the new events to the instance already in memory (ADR 0032). It holds no
/// tables: per-table state lives in <see cref="SourceSchema"/> documents, loaded only for the tables a command or a
/// response touches (ADR 0016). Secrets are held sealed only, and <see cref="SourceDetails.Of"/> never shows them.
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
    public string? CreatedBy { get; set; }
    public string? CreatedVia { get; set; }
    public string? Engine { get; set; }
    /// <summary>The time of the latest event: a table event moves it too, as it moves <see cref="Version"/>.</summary>
    public DateTimeOffset UpdatedAt { get; set; }
    /// <summary>Null while change data capture is off.</summary>
    public CdcSettings? Cdc { get; set; }
    /// <summary>Null until a webhook registration was attempted.</summary>
    public WebhookState? Webhook { get; set; }
    /// <summary>The webhook as the API shows it: what the last registration attempt said, even where no signing
    /// secret came back (an endpoint reused).</summary>
    public WebhookSummary? WebhookShown { get; set; }

    public bool IsDirect => AccessMethod == AccessMethods.Direct;

    /// <summary>"SourceType:prefix" for warehouse sources, null for direct ones: a unique index on it (per project)
    /// holds the prefix rule even when two creates race past the check (ADR 0015).</summary>
    [JsonIgnore]
    public string? WarehousePrefixKey => AccessMethod == AccessMethods.Warehouse ? $"{SourceType}:{Prefix}" : null;

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
        CreatedBy = e.CreatedBy.Name,
        CreatedVia = e.CreatedVia,
        Engine = e.Engine,
        UpdatedAt = e.CreatedAt,
    };

    public void Apply(SourceUpdated e)
    {
        Prefix = e.Prefix;
        Description = e.Description;
        DirectQueryEnabled = e.DirectQueryEnabled;
        JobInputs = e.JobInputs;
        Secrets = e.Secrets ?? Secrets;
        UpdatedAt = e.UpdatedAt;
    }

    // Table events change nothing the source-level deciders read, but they move the stream version the document
    // carries (If-Match is checked against it) and its updated_at: Marten only advances a document through events it
    // has a method for.
    public void Apply(SchemaAdded e) => Touch(e.AddedAt);
    public void Apply(SchemasBulkUpdated e) => UpdatedAt = e.UpdatedAt;
    public void Apply(SchemasRefreshed e) => UpdatedAt = e.RefreshedAt;
    public void Apply(CdcPublicationTablesChanged e) => Touch(e.ChangedAt);

    public void Apply(WebhookRegistered e) => ApplyWebhook(e, e.RegisteredAt);
    public void Apply(WebhookRegistrationFailed e) => ApplyWebhook(e, e.FailedAt);
    public void Apply(WebhookDeleted e) => ApplyWebhook(e, e.DeletedAt);

    public void Apply(CdcEnabled e)
    {
        Cdc = CdcSettings.From(e);
        Touch(e.EnabledAt);
    }

    public void Apply(CdcDisabled e)
    {
        Cdc = null;
        Touch(e.DisabledAt);
    }

    public void Apply(CdcSettingsChanged e)
    {
        Cdc = Cdc?.With(e);
        Touch(e.ChangedAt);
    }

    // A deleted source has no document: later commands and reads of it answer 404; its stream keeps the history.
    public bool ShouldDelete(SourceDeleted e) => true;

    private void ApplyWebhook(object e, DateTimeOffset at)
    {
        Webhook = WebhookState.Apply(Webhook, e);
        WebhookShown = WebhookSummary.Apply(WebhookShown, e);
        Touch(at);
    }

    private void Touch(DateTimeOffset at)
    {
        if (at > UpdatedAt) UpdatedAt = at;
    }

    /// <summary>The source as it will read once a decision's <paramref name="events"/> are appended: folded into a
    /// copy, since Marten folds the same events into this instance when the transaction commits.</summary>
    public Source Folded(IReadOnlyList<object> events)
    {
        var copy = (Source)MemberwiseClone();
        copy.JobInputs = (JsonObject)JobInputs.DeepClone();
        return FoldAll(copy, events, Version + 1)!;
    }

    /// <summary>The source a new stream's first events (versions 1..n) fold into: a create's answer.</summary>
    public static Source Started(IReadOnlyList<object> events) => FoldAll(null, events, 1)!;

    private static Source? FoldAll(Source? source, IReadOnlyList<object> events, int firstVersion)
    {
        for (var i = 0; i < events.Count; i++) source = After(source, EventFold<Source>.Wrap(events[i], firstVersion + i));
        return source;
    }

    /// <summary>This document's fold: its own Create, Apply and ShouldDelete methods, the ones Marten calls.</summary>
    public static readonly EventFold<Source> Fold = new(typeof(Source));

    /// <summary>The events of a source's stream that change nothing on its document: they are recorded after its
    /// deletion (the document is gone by then), or belong to another stream. A unit test holds every event type to
    /// either this list or a method above.</summary>
    public static readonly IReadOnlySet<Type> EventsThatChangeNothing = new HashSet<Type>
    {
        typeof(SourceSecretsShredded), typeof(CdcResourcesDropped), typeof(CdcCleanupAttemptFailed), typeof(CdcCleanupAbandoned),
        // The CDC consumer's progress and failures: its own stream's facts, read by auditors and operators, folded by no document.
        typeof(CdcChangesApplied), typeof(CdcStreamFailed),
    };

    /// <summary>One event folded the way Marten folds it into the stored document, version included: what an
    /// <c>as_of</c> read and a decision's answer use. Null before the source's creation and after its deletion.</summary>
    public static Source? After(Source? source, IEvent @event)
    {
        source = Fold.Apply(source, @event);
        if (source is not null) source.Version = (int)@event.Version;
        return source;
    }
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
