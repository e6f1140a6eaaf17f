using System.Globalization;
using ExternalData.EventSourced.Infrastructure.Messaging;
using ExternalData.EventSourced.Shared;
using JasperFx.CommandLine;
using Marten;
using Wolverine;
using Wolverine.Util;

namespace ExternalData.EventSourced.Sources;

public sealed class SyncsInput : NetCoreInput
{
    [Description("list (the default), run or cancel")]
    public string Action { get; set; } = "list";

    [Description("Only schemas of this project")]
    public string ProjectFlag { get; set; } = "";

    [Description("list: only schemas whose run is in progress")]
    public bool RunningFlag { get; set; }

    [Description("list: only schemas whose last run failed")]
    public bool FailingFlag { get; set; }

    [Description("run, cancel: the schema to run now, or whose running job to cancel")]
    public string SchemaFlag { get; set; } = "";
}

/// <summary>
/// Operator command: <c>dotnet run -- syncs [list|run|cancel] [--project P] [--running] [--failing] [--schema ID]</c>. Lists
/// the schemas' sync state across projects (status, last and next run, the running job, the latest error); starts a run
/// now, or cancels a running one, through the same use case as <c>POST external_data_schemas/{id}/reload/</c> and
/// <c>…/cancel/</c>, recorded as <c>system:operator</c>. Safe beside running nodes: it reads the store and appends like any
/// other caller, and hands a started run to the cluster through the queue the nodes take runs from (this process is no node).
/// </summary>
[Description("List sync runs and schedules, run one now, or cancel a running one", Name = "syncs")]
public sealed class SyncsCommand : JasperFxAsyncCommand<SyncsInput>
{
    public override async Task<bool> Execute(SyncsInput input)
    {
        using var host = input.BuildHost();
        var store = host.Services.GetRequiredService<IDocumentStore>();
        return input.Action switch
        {
            "list" => await ListAsync(store, input),
            "run" => await RunAsync(store, host.Services.GetRequiredService<SourceTypes.SourceTypeRegistry>(), host.Services.GetRequiredService<WolverineOptions>(), input),
            "cancel" => await CancelAsync(store, host.Services.GetRequiredService<SourceTypes.SourceTypeRegistry>(), input),
            _ => await FailAsync($"Unknown action '{input.Action}': list, run or cancel."),
        };
    }

    private static async Task<bool> ListAsync(IDocumentStore store, SyncsInput input)
    {
        await using var session = store.QuerySession();
        var schemas = await session.Query<SourceSchema>().Where(s => s.AnyTenant() && !s.Removed).ToListAsync();
        var states = (await session.Query<SchemaSync>().Where(s => s.AnyTenant()).ToListAsync()).ToDictionary(s => s.Id);
        var projects = (await session.Query<Source>().Where(s => s.AnyTenant()).ToListAsync()).ToDictionary(s => s.Id, s => s.ProjectId);
        Console.WriteLine($"{"project",-10} {"schema id",-36} {"table",-24} {"type",-12} {"enabled",-7} {"status",-9} {"last run",-20} {"next run",-20} latest error");
        foreach (var schema in schemas.OrderBy(s => projects.GetValueOrDefault(s.SourceId), StringComparer.Ordinal).ThenBy(s => s.Name, StringComparer.Ordinal))
        {
            var project = projects.GetValueOrDefault(schema.SourceId) ?? "?";
            var state = states.GetValueOrDefault(schema.Id);
            if (input.ProjectFlag.Length > 0 && project != input.ProjectFlag) continue;
            if (input.RunningFlag && state?.RunningJobId is null) continue;
            if (input.FailingFlag && state?.LastStatus != JobStatuses.Failed) continue;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{project,-10} {schema.Id,-36} {Cut(schema.Name, 24),-24} {schema.Settings.SyncType ?? "-",-12} {(schema.Settings.ShouldSync ? "yes" : "no"),-7} {state?.Status ?? "-",-9} {Time(state?.LastRunAt),-20} {Time(state?.NextRunAt),-20} {state?.LatestError ?? ""}"));
        }

        return true;
    }

    /// <summary>The project a schema belongs to, or null when there is no such schema.</summary>
    private static async Task<string?> ProjectOfAsync(IDocumentStore store, Guid schemaId)
    {
        await using var query = store.QuerySession();
        var schema = await query.Query<SourceSchema>().Where(s => s.AnyTenant() && s.Id == schemaId).FirstOrDefaultAsync();
        if (schema is null) return null;
        return (await query.Query<Source>().Where(s => s.AnyTenant() && s.Id == schema.SourceId).Select(s => s.ProjectId).FirstOrDefaultAsync()) ?? "";
    }

    private static Caller Operator(string project, string what) => Caller.System(project, "operator", $"operator-{Guid.NewGuid():N}", what);

    /// <summary>Starts a run now (the reload use case). Its <see cref="RunSyncJob"/> is put in the queue every node takes runs
    /// from, in the transaction of the job's first facts: the first node with room runs it, and the facts never exist
    /// without it (ADR 0049).</summary>
    private static async Task<bool> RunAsync(IDocumentStore store, SourceTypes.SourceTypeRegistry registry, WolverineOptions wolverine, SyncsInput input)
    {
        if (!Guid.TryParse(input.SchemaFlag, out var schemaId)) return await FailAsync("run needs --schema <schema id> (as 'syncs list' shows it).");
        if (await ProjectOfAsync(store, schemaId) is not { } project) return await FailAsync($"No schema {schemaId}.");

        await using var session = store.LightweightSession(project);
        var command = new ActOnSchemaSync(schemaId, SchemaSyncAction.Reload) { Caller = Operator(project, "syncs run") };
        CallerMetadata.Stamp(session, command.Caller);
        var target = await ActOnSchemaSyncHandler.LoadAsync(command, session, CancellationToken.None);
        var (outcome, messages) = ActOnSchemaSyncHandler.Handle(command, target, session, registry, DateTimeOffset.UtcNow);
        if (outcome.Problem is { } problem) return await FailAsync(problem.Detail ?? problem.Title ?? "refused");
        var runs = messages.OfType<RunSyncJob>().ToList();
        if (runs.Count != messages.Count) return await FailAsync("The reload asked for work this command cannot hand over; use POST …/reload/ instead.");
        foreach (var run in runs) Enqueue(session, wolverine, run);
        await session.SaveChangesAsync();
        foreach (var run in runs)
            Console.WriteLine($"Started job {run.JobId} of schema {schemaId}: the first node with room runs it. Watch it with 'syncs list --running' or GET …/external_data_schemas/{schemaId}/jobs/.");
        return true;
    }

    /// <summary>Puts the run in the sync-run queue's table, as Wolverine's PostgreSQL sender does, in the session's transaction.</summary>
    private static void Enqueue(IDocumentSession session, WolverineOptions wolverine, RunSyncJob run)
    {
        var serializer = wolverine.DefaultSerializer;
        var envelope = new Envelope(run)
        {
            Id = Guid.CreateVersion7(),
            MessageType = typeof(RunSyncJob).ToMessageTypeName(),
            ContentType = serializer.ContentType,
        };
        envelope.Data = serializer.Write(envelope);
        session.QueueSqlCommand(
            $"INSERT INTO {session.DocumentStore.Options.DatabaseSchemaName}.{SyncRunQueue.Table} (id, body, message_type) VALUES (?, ?, ?)",
            envelope.Id, Wolverine.Runtime.Serialization.EnvelopeSerializer.Serialize(envelope), envelope.MessageType);
    }

    private static async Task<bool> CancelAsync(IDocumentStore store, SourceTypes.SourceTypeRegistry registry, SyncsInput input)
    {
        if (!Guid.TryParse(input.SchemaFlag, out var schemaId)) return await FailAsync("cancel needs --schema <schema id> (as 'syncs list' shows it).");
        if (await ProjectOfAsync(store, schemaId) is not { } project) return await FailAsync($"No schema {schemaId}.");

        // The cancel use case's own load and decision, on a session for the schema's project; it sends no message.
        await using var session = store.LightweightSession(project);
        var command = new ActOnSchemaSync(schemaId, SchemaSyncAction.Cancel) { Caller = Operator(project, "syncs cancel") };
        CallerMetadata.Stamp(session, command.Caller);
        var target = await ActOnSchemaSyncHandler.LoadAsync(command, session, CancellationToken.None);
        var (outcome, _) = ActOnSchemaSyncHandler.Handle(command, target, session, registry, DateTimeOffset.UtcNow);
        if (outcome.Problem is { } problem) return await FailAsync(problem.Detail ?? problem.Title ?? "refused");
        await session.SaveChangesAsync();
        Console.WriteLine($"Cancelled the running job of schema {schemaId}: it stops after its current batch.");
        return true;
    }

    private static string Cut(string text, int length) => text.Length <= length ? text : text[..(length - 1)] + "…";

    private static string Time(DateTimeOffset? at) => at?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) ?? "-";

    private static async Task<bool> FailAsync(string message)
    {
        await Console.Error.WriteLineAsync(message);
        return false;
    }
}
