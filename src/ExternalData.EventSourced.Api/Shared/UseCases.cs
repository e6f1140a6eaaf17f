using Wolverine;

namespace ExternalData.EventSourced.Shared;

/// <summary>
/// How a channel runs a use case: the command (with its caller) goes to its Wolverine handler in-process, for the
/// caller's project, and the answer comes back as a value or a problem. REST, MCP and the connect page all call
/// this, so they share one gate, one decision and one transaction; none of them loops back over HTTP.
/// </summary>
public static class UseCases
{
    // Generous: a create discovers and records every table of a wide database in its one transaction.
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    public static Task<Checked<T>> RunAsync<T>(this IMessageBus bus, ICommand command, CancellationToken ct) where T : class =>
        bus.InvokeForTenantAsync<Checked<T>>(command.Caller.ProjectId, command, ct, Timeout);
}
