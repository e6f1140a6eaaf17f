using JasperFx.Events;
using Marten;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Shared;

/// <summary>A decision's side effect on a second stream that the use case's gate already fetched for exclusive
/// writing in this transaction (a setup consuming a stash, a connect page spending its link).</summary>
public sealed record AppendToLockedStream<T>(IEventStream<T> Stream, object Event) : IMartenOp where T : class
{
    public void Execute(IDocumentSession session) => Stream.AppendOne(Event);
}
