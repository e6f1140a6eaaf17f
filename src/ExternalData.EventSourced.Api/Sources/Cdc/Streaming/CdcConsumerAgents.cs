using JasperFx;
using Marten;
using Wolverine.Runtime;
using Wolverine.Runtime.Agents;

namespace ExternalData.EventSourced.Sources;

/// <summary>
/// The CDC consumers as a Wolverine agent family (ADR 0047): one agent per source with CDC on, <c>cdc://{source}/{project}</c>.
/// Wolverine's leader assigns each to exactly one live node, spreads them over the nodes, and moves a dead node's agents to
/// the survivors; a node runs only what it is assigned. No election of our own.
/// </summary>
public sealed class CdcConsumerAgents(IDocumentStore store, IServiceProvider services, ILoggerFactory loggers) : IAgentFamily
{
    public const string AgentScheme = "cdc";

    public string Scheme => AgentScheme;

    public static Uri UriFor(string projectId, Guid sourceId) => new($"{AgentScheme}://{sourceId:N}/{Uri.EscapeDataString(projectId)}");

    public async ValueTask<IReadOnlyList<Uri>> AllKnownAgentsAsync()
    {
        await using var query = store.QuerySession();
        var sources = await query.Query<Source>().Where(s => s.AnyTenant() && s.Cdc != null).Select(s => new SourceRef(s.Id, s.ProjectId)).ToListAsync();
        return sources.Select(s => UriFor(s.ProjectId, s.Id)).ToList();
    }

    private sealed record SourceRef(Guid Id, string ProjectId);

    public ValueTask<IAgent> BuildAgentAsync(Uri uri, IWolverineRuntime wolverineRuntime)
    {
        var sourceId = Guid.ParseExact(uri.Host, "N");
        var projectId = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        return ValueTask.FromResult<IAgent>(new CdcConsumerAgent(uri, new CdcConsumer(projectId, sourceId, services, loggers.CreateLogger<CdcConsumer>())));
    }

    public ValueTask<IReadOnlyList<Uri>> SupportedAgentsAsync() => AllKnownAgentsAsync();

    public ValueTask EvaluateAssignmentsAsync(AssignmentGrid assignments)
    {
        assignments.DistributeEvenly(Scheme);
        return ValueTask.CompletedTask;
    }
}

/// <summary>One source's consumer as an agent: started and stopped by Wolverine on the node it is assigned to.</summary>
public sealed class CdcConsumerAgent(Uri uri, CdcConsumer consumer) : IAgent
{
    private CancellationTokenSource? _stop;
    private Task? _running;

    public Uri Uri => uri;

    public AgentStatus Status { get; private set; } = AgentStatus.Stopped;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _stop = new CancellationTokenSource();
        _running = Task.Run(() => consumer.RunAsync(_stop.Token), CancellationToken.None);
        Status = AgentStatus.Running;
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        Status = AgentStatus.Stopped;
        if (_stop is null || _running is null) return;
        await _stop.CancelAsync();
        try
        {
            await _running.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // Stopped.
        }
        finally
        {
            _stop.Dispose();
        }
    }
}
