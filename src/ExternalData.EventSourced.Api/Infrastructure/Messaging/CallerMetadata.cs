using JasperFx;
using JasperFx.CodeGeneration;
using JasperFx.CodeGeneration.Frames;
using ExternalData.EventSourced.Shared;
using Marten;
using Wolverine.Configuration;
using Wolverine.Runtime.Handlers;

namespace ExternalData.EventSourced.Infrastructure.Messaging;

/// <summary>
/// Stamps the Marten session of every use-case handler with its caller, so each event the use case appends records
/// actor, channel, correlation and causation in its metadata (API.md §1.7), the same values the event body carries, and
/// the node that recorded it.
/// Auditors read these back from <c>mt_events</c>.
/// </summary>
public static class CallerMetadata
{
    public const string ActorIdHeader = "actor_id";
    public const string ActorNameHeader = "actor_name";
    public const string CreatedViaHeader = "created_via";

    /// <summary>Which process of the cluster recorded the event (host and process id): an auditor can tell which node ran a
    /// sync, took a schedule over or answered a request.</summary>
    public const string NodeHeader = "node";

    public static readonly string Node = $"{Environment.MachineName}/{Environment.ProcessId}";

    public static void Before<T>(T command, IDocumentSession session) where T : ICommand => Stamp(session, command.Caller);

    /// <summary>For code that opens its own session (a sync run commits in its own transactions).</summary>
    public static void Stamp(IDocumentSession session, Caller caller)
    {
        session.CorrelationId = caller.CorrelationId;
        session.CausationId = caller.CausationId;
        session.LastModifiedBy = caller.Actor.Name;
        // The service itself has no API key: its actor is named (system:<component>) but carries no id.
        if (caller.Actor.ApiKeyId != Guid.Empty) session.SetHeader(ActorIdHeader, caller.Actor.ApiKeyId.ToString());
        session.SetHeader(ActorNameHeader, caller.Actor.Name);
        session.SetHeader(CreatedViaHeader, caller.Channel);
        session.SetHeader(NodeHeader, Node);
    }
}

/// <summary>Puts <see cref="CallerMetadata.Before{T}"/> first in every handler whose message is an <see cref="ICommand"/>
/// (closed over the message type: Wolverine binds middleware arguments by exact type).</summary>
public sealed class CallerMetadataPolicy : IHandlerPolicy
{
    public void Apply(IReadOnlyList<HandlerChain> chains, GenerationRules rules, IServiceContainer container)
    {
        foreach (var chain in chains.Where(c => typeof(ICommand).IsAssignableFrom(c.MessageType)))
        {
            var method = typeof(CallerMetadata).GetMethod(nameof(CallerMetadata.Before))!.MakeGenericMethod(chain.MessageType);
            chain.Middleware.Insert(0, new MethodCall(typeof(CallerMetadata), method));
        }
    }
}
