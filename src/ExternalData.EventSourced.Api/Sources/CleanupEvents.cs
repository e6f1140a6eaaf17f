using ExternalData.EventSourced.Shared;

namespace ExternalData.EventSourced.Sources;

// What the durable clean-up of a deleted source records (see CleanUpDeletedSource).

/// <summary>The deleted source's CDC slot and publication were removed (or were already gone).</summary>
/// <remarks>The clean-up events name the actor and channel of the deletion that caused them, as their metadata does.</remarks>
public sealed record CdcResourcesDropped(
    Guid SourceId, string? SlotName, string? PublicationName, bool SlotDropped, bool PublicationDropped, int Attempt, Actor CausedBy, string Via, DateTimeOffset DroppedAt) : IDomainEvent;

/// <summary>A clean-up attempt failed; another is scheduled.</summary>
public sealed record CdcCleanupAttemptFailed(Guid SourceId, int Attempt, string Error, DateTimeOffset NextAttemptAt, Actor CausedBy, string Via, DateTimeOffset FailedAt) : IDomainEvent;

/// <summary>The last attempt failed: what is left on the source and the SQL the customer must run to remove it.</summary>
public sealed record CdcCleanupAbandoned(
    Guid SourceId, string? SlotName, string? PublicationName, int Attempts, string Error, string RemediationSql, Actor CausedBy, string Via, DateTimeOffset AbandonedAt) : IDomainEvent;
