using Microsoft.AspNetCore.Mvc;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ExternalData.EventSourced.Infrastructure.Http;
using ExternalData.EventSourced.Infrastructure.Encryption;
using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.SourceTypes;
using ExternalData.EventSourced.SourceTypes.ChangeDataCapture;
using FluentValidation;
using Marten;
using Wolverine;
using Wolverine.Http;
using Wolverine.Marten;
using ExternalData.EventSourced.Infrastructure.Auth;

namespace ExternalData.EventSourced.Sources;

/// <summary>PATCH external_data_sources/{id}/bulk_update_schemas/ (API.md §3 row 6, ref §5.6). Entries stay JSON
/// objects: whether a key is present (and null) or absent matters.</summary>
public sealed record BulkUpdateSchemas(JsonArray? Schemas) : ICommand
{
    [JsonIgnore] public Guid SourceId { get; init; }
    [JsonIgnore] public int? ExpectedVersion { get; init; }
    [JsonIgnore] public Caller Caller { get; init; } = null!;

    public sealed class Validator : AbstractValidator<BulkUpdateSchemas>
    {
        public Validator()
        {
            RuleFor(x => x.Schemas).NotNull().WithMessage("This field is required.").WithErrorCode("required")
                .Must(s => s is null || s.Count > 0).WithMessage("This list may not be empty.").WithErrorCode("empty");
            RuleForEach(x => x.Schemas).Must(e => e is JsonObject o && SchemaId(o) is not null)
                .WithMessage("Each schema update must be an object with an 'id' that is a UUID.").WithErrorCode("invalid");
        }
    }

    public static Guid? SchemaId(JsonObject entry) =>
        entry["id"] is JsonValue v && v.TryGetValue<string>(out var s) && Guid.TryParse(s, out var id) ? id : null;
}

/// <summary>The whole batch, checked: every requested schema as it will read, and the changes to record.</summary>
public sealed record SchemaChanges(
    IReadOnlyList<SchemaDetails> Requested, IReadOnlyList<SchemaSettingsChange> Changed, IReadOnlyList<string> ChangedFields, CdcPublicationChanged? Publication = null);

/// <summary>What the batch did to the managed CDC publication on the source.</summary>
public sealed record CdcPublicationChanged(string PublicationName, IReadOnlyList<string> Added, IReadOnlyList<string> Dropped);

/// <summary>The bulk-update use case, whichever channel calls it. Only the schemas named in the batch are read.</summary>
public static class BulkUpdateSchemasHandler
{
    /// <summary>Every entry is judged before anything is written; one bad entry refuses the whole batch (atomic,
    /// unlike PostHog's per-schema transactions), naming each failing schema and why. Runs after the source's stream
    /// is locked for this write, so the schemas read are the ones the change lands on.</summary>
    public static async Task<Checked<SchemaChanges>> LoadAsync(
        BulkUpdateSchemas command, Source? source, IValidator<BulkUpdateSchemas> validator, IDocumentSession session, SourceTypeRegistry registry,
        SecretsCipher cipher, ILogger<BulkUpdateSchemas> logger, CancellationToken ct)
    {
        if (source is null) return Problems.NotFound();
        if (IfMatch.Check(command.ExpectedVersion, source.Version) is { } stale) return stale;
        if (await Validation.CheckAsync(validator, command, ct) is { } invalid) return invalid;

        var entries = command.Schemas!.Select(e => (JsonObject)e!).ToList();
        var ids = entries.Select(e => BulkUpdateSchemas.SchemaId(e)!.Value).ToList();
        if (ids.Distinct().Count() != ids.Count) return Problems.Validation("Schema updates must contain unique ids", "schemas", "duplicate_ids");

        var byId = (await session.LoadManyAsync<SourceSchema>(ct, ids)).Where(s => s.SourceId == source.Id).ToDictionary(s => s.Id);
        if (ids.Any(id => !byId.ContainsKey(id))) return Problems.Validation("One or more schemas could not be found for this source", "schemas", "schema_not_found");
        var judged = Judge(entries.Zip(ids, (entry, id) => (byId[id], entry)).ToList(), source.IsDirect, source.Cdc is not null);
        if (judged.Problem is not null || source.Cdc is not { Managed: true } cdcSettings) return judged;
        return await PublishAsync(judged.Value!, byId, source, cdcSettings, session, registry, cipher, logger, ct);
    }

    /// <summary>
    /// In managed CDC, a table joins the publication when its schema starts syncing with CDC and leaves it when it
    /// stops (ref §5.21). Done before the event is recorded, under the stream lock; if the change cannot be made the
    /// batch is refused whole, and if the batch fails after it, the compensation puts the publication back.
    /// </summary>
    private static async Task<Checked<SchemaChanges>> PublishAsync(
        SchemaChanges changes, IReadOnlyDictionary<Guid, SourceSchema> before, Source source, CdcSettings cdcSettings, IDocumentSession session,
        SourceTypeRegistry registry, SecretsCipher cipher, ILogger logger, CancellationToken ct)
    {
        static bool Streams(SyncSettings s) => s is { ShouldSync: true, SyncType: SyncTypes.Cdc };
        var joining = changes.Changed.Where(c => !Streams(before[c.SchemaId].Settings) && Streams(c.Settings)).Select(c => c.Name).ToList();
        var leaving = changes.Changed.Where(c => Streams(before[c.SchemaId].Settings) && !Streams(c.Settings)).Select(c => c.Name).ToList();
        if (joining.Count == 0 && leaving.Count == 0) return changes;

        var cdc = (IChangeDataCapture)registry.Get(source.SourceType);
        var config = await StoredConfig.LoadAsync(source, session, cipher, ct);
        var add = joining.Select(t => cdc.QualifiedTable(config, t)).ToList();
        var drop = leaving.Select(t => cdc.QualifiedTable(config, t)).ToList();
        var outcome = await cdc.ChangePublicationAsync(config, cdcSettings.PublicationName, add, drop, ct);
        if (outcome.Value is not { } done)
        {
            var reason = outcome.Unreachable?.Message ?? outcome.Error;
            return Problems.Validation($"Could not update the CDC publication '{cdcSettings.PublicationName}' on your database: {reason} No schema in the batch was changed.",
                "schemas", "cdc_publication_failed");
        }

        Compensations.OnFailure(async () =>
        {
            var undone = await cdc.ChangePublicationAsync(config, cdcSettings.PublicationName, done.Dropped, done.Added, CancellationToken.None);
            if (undone.Value is null)
                logger.LogError("Could not restore the CDC publication {Publication} after a failed schema update: {Error}", cdcSettings.PublicationName, undone.Error ?? undone.Unreachable?.Message);
        });
        return changes with { Publication = done.Added.Count + done.Dropped.Count == 0 ? null : new CdcPublicationChanged(cdcSettings.PublicationName, done.Added, done.Dropped) };
    }

    /// <summary>The rules over the whole batch: pure, so atomicity is a property of this function.</summary>
    public static Checked<SchemaChanges> Judge(IReadOnlyList<(SourceSchema Schema, JsonObject Entry)> batch, bool direct, bool cdcEnabled = false)
    {
        var requested = new List<SchemaDetails>();
        var changed = new List<SchemaSettingsChange>();
        var fields = new SortedSet<string>(StringComparer.Ordinal);
        var failures = new List<(Guid Id, string Name, string Reason)>();
        foreach (var (schema, entry) in batch)
        {
            var (result, changedFields, reason) = SchemaUpdate.Apply(schema, entry, direct, cdcEnabled);
            if (reason is not null)
            {
                failures.Add((schema.Id, schema.Name, reason));
                continue;
            }

            requested.Add(SchemaDetails.From(schema.Id, schema.Name, schema.Facts, result!));
            if (changedFields.Count == 0) continue;
            changed.Add(new SchemaSettingsChange(schema.Id, schema.Name, result!, changedFields));
            fields.UnionWith(changedFields);
        }

        if (failures.Count == 0) return new SchemaChanges(requested, changed, fields.ToList());

        var problem = Problems.Validation(
            $"These schemas in the batch could not be saved: {string.Join("; ", failures.Select(f => $"{f.Name} ({f.Reason})"))}. No schema in the batch was changed.",
            "schemas", "bulk_schema_save_failed");
        problem.Extensions["errors"] = failures.Select(f => new { id = f.Id, schema = f.Name, detail = f.Reason }).ToList();
        return problem;
    }

    /// <summary>One event for the whole batch, or none when nothing actually changed. Answers the requested schemas; the
    /// changed ones' schedules are looked at again in the same transaction (a table just enabled runs within seconds).</summary>
    public static (Checked<IReadOnlyList<SchemaDetails>>, Events, OutgoingMessages) Handle(
        BulkUpdateSchemas command, [WriteAggregate(Required = false, LoadStyle = ConcurrencyStyle.Exclusive)] Source? source,
        Checked<SchemaChanges> checkedChanges, DateTimeOffset now)
    {
        if (checkedChanges.Problem is { } problem) return (problem, [], []);
        var changes = checkedChanges.Value!;
        if (changes.Changed.Count == 0) return (Ok(changes.Requested), [], []);
        var caller = command.Caller;
        Events events = [new SchemasBulkUpdated(command.SourceId, changes.Changed, changes.ChangedFields, caller.Actor, caller.Channel, now)];
        if (changes.Publication is { } p)
            events.Add(new CdcPublicationTablesChanged(command.SourceId, p.PublicationName, p.Added, p.Dropped, caller.Actor, caller.Channel, now));
        return (Ok(changes.Requested), events, SyncScheduler.Arm(caller.ProjectId, command.SourceId, changes.Changed.Select(c => c.SchemaId)));
    }

    private static Checked<IReadOnlyList<SchemaDetails>> Ok(IReadOnlyList<SchemaDetails> schemas) => new(schemas, null);
}

public static class BulkUpdateSchemasEndpoint
{
    [WolverinePatch("/api/projects/{project_id}/external_data_sources/{id}/bulk_update_schemas")]
    [ProducesResponseType<IReadOnlyList<SchemaDetails>>(StatusCodes.Status200OK)]
    public static async Task<IResult> Patch(string project_id, Guid id, BulkUpdateSchemas command, HttpContext context, IMessageBus bus)
    {
        var outcome = await bus.RunAsync<IReadOnlyList<SchemaDetails>>(
            command with { SourceId = id, ExpectedVersion = IfMatch.Version(context), Caller = HttpCaller.From(context, project_id) }, context.RequestAborted);
        return outcome.Problem is { } problem ? Results.Problem(problem) : Results.Json(outcome.Value);
    }
}
