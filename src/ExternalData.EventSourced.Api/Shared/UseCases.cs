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

    /// <summary>Runs the use case; when it ends in a problem or its transaction fails, what its gate did outside this
    /// database (a replication slot it created, say) is undone (<see cref="Compensations"/>).</summary>
    public static async Task<Checked<T>> RunAsync<T>(this IMessageBus bus, ICommand command, CancellationToken ct) where T : class
    {
        using var scope = Compensations.Begin();
        try
        {
            var outcome = await bus.InvokeForTenantAsync<Checked<T>>(command.Caller.ProjectId, command, ct, Timeout);
            if (outcome.IsProblem) await scope.UndoAsync();
            return outcome;
        }
        catch
        {
            await scope.UndoAsync();
            throw;
        }
    }
}

/// <summary>
/// Undo steps for work a use case did outside its own transaction. A gate that changes the customer's system before
/// the decision is recorded (CDC provisioning must happen before the event that says it happened) registers how to
/// undo it; if the use case then fails — a later refusal, a lost race, a failed commit — the step runs, so a failure
/// leaves nothing behind on either side (ADR 0025). Scoped to the running use case through the async flow.
/// </summary>
public static class Compensations
{
    private static readonly AsyncLocal<Scope?> Current = new();

    /// <summary>Registers an undo step with the running use case (none outside one: then there is nothing to undo into).</summary>
    public static void OnFailure(Func<Task> undo) => Current.Value?.Add(undo);

    public static Scope Begin()
    {
        var scope = new Scope(Current.Value);
        Current.Value = scope;
        return scope;
    }

    public sealed class Scope(Scope? outer) : IDisposable
    {
        private readonly List<Func<Task>> _steps = [];

        internal void Add(Func<Task> undo)
        {
            lock (_steps) _steps.Add(undo);
        }

        /// <summary>Runs the steps newest first. An undo step that fails is not allowed to hide the original failure.</summary>
        public async Task UndoAsync()
        {
            List<Func<Task>> steps;
            lock (_steps)
            {
                steps = [.. _steps];
                _steps.Clear();
            }

            steps.Reverse();
            foreach (var step in steps)
            {
                try { await step(); }
                catch (Exception) { /* the step logs its own failure; the use case's own failure is what the caller sees */ }
            }
        }

        public void Dispose() => Current.Value = outer;
    }
}
