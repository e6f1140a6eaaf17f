using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using Marten;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>POST external_data_sources/{id}/refresh_schemas/ (API.md §3 row 23, ref §5.20, §7.3): rediscover with
/// the stored credentials and reconcile the schemas with what is there now.</summary>
public sealed record RefreshSchemas(Guid SourceId) : ICommand
{
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;
}

/// <summary>PostHog's answer, plus [beyond] the columns that appeared or vanished in enabled tables.</summary>
public sealed record SchemasRefreshResult(int Added, int Deleted, int TotalTablesSeen, IReadOnlyList<ColumnChange> ColumnChanges);

public sealed record ColumnChange(Guid Id, string Name, IReadOnlyList<string> ColumnsAdded, IReadOnlyList<string> ColumnsRemoved);

/// <summary>The rediscovery use case, whichever channel calls it.</summary>
public static class RefreshSchemasHandler
{
    public const string NoConfiguration = "Source has no configuration.";

    /// <summary>The I/O: the stored config with its secrets, a live discovery, and every stored schema (a
    /// rediscovery is about all of them). Runs with the source's stream locked for this write.</summary>
    public static async Task<Checked<Reconciliation>> LoadAsync(
        RefreshSchemas command, Source? source, IDocumentSession session, SourceTypeRegistry registry, SecretsCipher cipher, CancellationToken ct)
    {
        if (source is null) return Problems.NotFound();
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return stale;
        if (source.JobInputs.Count == 0) return Problems.Validation(NoConfiguration, null, "no_configuration");

        var type = registry.Get(source.SourceType);
        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        return await SchemaReconciliation.RediscoverAsync(type, config, source.Id, session, ct);
    }

    /// <summary>The new tables as one event each and one event naming everything the rediscovery changed.</summary>
    public static (Checked<SchemasRefreshResult>, Events) Handle(
        RefreshSchemas command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source,
        Checked<Reconciliation> reconciliation, DateTimeOffset now)
    {
        if (reconciliation.Problem is { } problem) return (problem, []);
        var result = reconciliation.Value!;
        return (Answer(result), [.. SchemaReconciliation.Events(command.SourceId, result, command.Caller, now)]);
    }

    private static Checked<SchemasRefreshResult> Answer(Reconciliation r) => new SchemasRefreshResult(
        r.Added.Count + r.Revived.Count, r.Removed.Count, r.TotalTablesSeen,
        r.ColumnDrift.Select(d => new ColumnChange(d.SchemaId, d.Name, d.Appeared, d.Vanished)).ToList());
}

public static class RefreshSchemasEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/refresh_schemas")]
    [ProducesResponseType<SchemasRefreshResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<SchemasRefreshResult>(
            new RefreshSchemas(id) { ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
