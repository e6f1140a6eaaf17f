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
        return await RediscoverAsync(type, config, source.Id, session, ct);
    }

    /// <summary>Discovery and reconciliation, shared with a direct source's connection change (ref §5.4 step 4).</summary>
    public static async Task<Checked<Reconciliation>> RediscoverAsync(ISourceType type, JsonObject config, Guid sourceId, IQuerySession session, CancellationToken ct)
    {
        var discovery = await type.DiscoverAsync(config, ct);
        if (!discovery.Check.Ok) return Problems.Validation(discovery.Check.Message!, null, discovery.Check.Code!);
        var stored = await session.Query<SourceSchema>().Where(s => s.SourceId == sourceId).ToListAsync(ct);
        return SchemaReconciliation.Reconcile(stored, discovery.Tables, Guid.CreateVersion7);
    }

    /// <summary>The new tables as one event each and one event naming everything the rediscovery changed.</summary>
    public static (Checked<SchemasRefreshResult>, Events) Handle(
        RefreshSchemas command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source,
        Checked<Reconciliation> reconciliation, DateTimeOffset now)
    {
        if (reconciliation.Problem is { } problem) return (problem, []);
        var result = reconciliation.Value!;
        return (Answer(result), [.. Decide(command.SourceId, result, command.Caller, now)]);
    }

    public static IReadOnlyList<object> Decide(Guid sourceId, Reconciliation result, Caller caller, DateTimeOffset now)
    {
        var events = new List<object>();
        events.AddRange(result.Added.Select(s => new SchemaAdded(sourceId, s.Id, s.Name, s.Facts, s.Settings, caller.Actor, caller.Channel, now)));
        events.Add(new SchemasRefreshed(sourceId, result.Added.Select(a => a.Name).ToList(), result.Revived, result.Removed, result.Disabled,
            result.FactsChanged, result.ColumnDrift, result.TotalTablesSeen, caller.Actor, caller.Channel, now));
        return events;
    }

    private static Checked<SchemasRefreshResult> Answer(Reconciliation r) => new SchemasRefreshResult(
        r.Added.Count + r.Revived.Count, r.Removed.Count, r.TotalTablesSeen,
        r.ColumnDrift.Select(d => new ColumnChange(d.SchemaId, d.Name, d.Appeared, d.Vanished)).ToList());
}

/// <summary>A source's full config: the public part with its secrets unsealed and laid back in.</summary>
public static class StoredConfig
{
    public static async Task<JsonObject> LoadAsync(Source source, IQuerySession session, SecretsCipher cipher, CancellationToken ct) =>
        (await LoadWithKeyAsync(source, session, cipher, ct)).Config;

    /// <summary>The full config and the source's data key (null when it never had secrets), for a change that re-seals.</summary>
    public static async Task<(JsonObject Config, byte[]? DataKey)> LoadWithKeyAsync(Source source, IQuerySession session, SecretsCipher cipher, CancellationToken ct)
    {
        var dataKeyDocument = await session.LoadAsync<DataKey>(source.Id, ct);
        var dataKey = dataKeyDocument is null ? null : cipher.Unwrap(dataKeyDocument);
        var secrets = source.Secrets is not null && dataKey is not null ? cipher.Unseal(source.Secrets, dataKey, source.Id) : new JsonObject();
        return (UpdateSourceHandler.Combine(source.JobInputs, secrets), dataKey);
    }
}

public static class RefreshSchemasEndpoint
{
    [WolverinePost("/api/projects/{project_id}/external_data_sources/{id}/refresh_schemas")]
    [ProducesResponseType<SchemasRefreshResult>(StatusCodes.Status200OK)]
    public static async Task<IResult> Post(string project_id, Guid id, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<SchemasRefreshResult>(
            new RefreshSchemas(id) { ExpectedVersion = IfMatch.Version(context), Caller = Caller.FromHttp(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
