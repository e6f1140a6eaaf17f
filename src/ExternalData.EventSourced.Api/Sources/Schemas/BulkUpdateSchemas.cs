using System.Security.Claims;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Http;
using FluentValidation;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;
using Wolverine.Marten;

namespace ExternalData.EventSourced.Sources;

/// <summary>PATCH external_data_sources/{id}/bulk_update_schemas/ (API.md §3 row 6, ref §5.6). Entries stay JSON
/// objects: whether a key is present (and null) or absent matters.</summary>
public sealed record BulkUpdateSchemas(JsonArray? Schemas)
{
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

/// <summary>The whole batch, checked: every changed schema's resulting settings, in request order.</summary>
public sealed record SchemaChanges(IReadOnlyList<SchemaSettings> Requested, IReadOnlyList<SchemaSettings> Changed, IReadOnlyList<string> ChangedFields);

public static class BulkUpdateSchemasEndpoint
{
    /// <summary>Every entry is judged before anything is written; one bad entry refuses the whole batch (atomic,
    /// unlike PostHog's per-schema transactions), naming each failing schema and why.</summary>
    public static Checked<SchemaChanges> Load(BulkUpdateSchemas command, Source source, HttpContext context)
    {
        if (IfMatch.Version(context) is { } expected && expected != source.Version) return IfMatch.Stale(source.Version, expected);

        var entries = command.Schemas!.Select(e => (JsonObject)e!).ToList();
        var ids = entries.Select(e => BulkUpdateSchemas.SchemaId(e)!.Value).ToList();
        if (ids.Distinct().Count() != ids.Count) return Problems.Validation("Schema updates must contain unique ids", "schemas", "duplicate_ids");

        var byId = source.Schemas.ToDictionary(s => s.Id);
        if (ids.Any(id => !byId.ContainsKey(id))) return Problems.Validation("One or more schemas could not be found for this source", "schemas", "schema_not_found");

        var requested = new List<SchemaSettings>();
        var changed = new List<SchemaSettings>();
        var fields = new SortedSet<string>(StringComparer.Ordinal);
        var failures = new List<(Guid Id, string Name, string Reason)>();
        foreach (var (entry, id) in entries.Zip(ids))
        {
            var (result, changedFields, reason) = SchemaUpdate.Apply(byId[id], entry, source.IsDirect);
            if (reason is not null)
            {
                failures.Add((id, byId[id].Name, reason));
                continue;
            }

            requested.Add(result!);
            if (changedFields.Count == 0) continue;
            changed.Add(result!);
            fields.UnionWith(changedFields);
        }

        if (failures.Count == 0) return new SchemaChanges(requested, changed, fields.ToList());

        var problem = Problems.Validation(
            $"These schemas in the batch could not be saved: {string.Join("; ", failures.Select(f => $"{f.Name} ({f.Reason})"))}. No schema in the batch was changed.",
            "schemas", "bulk_schema_save_failed");
        problem.Extensions["errors"] = failures.Select(f => new { id = f.Id, schema = f.Name, detail = f.Reason }).ToList();
        return problem;
    }

    public static ProblemDetails Validate(Checked<SchemaChanges> changes) => changes.Problem ?? WolverineContinue.NoProblems;

    /// <summary>One event for the whole batch, or none when nothing actually changed. Answers the requested schemas.</summary>
    [WolverinePatch("/api/projects/{project_id}/external_data_sources/{id}/bulk_update_schemas")]
    public static (IReadOnlyList<SchemaDetails>, Events) Patch(
        BulkUpdateSchemas command, [WriteAggregate] Source source, Checked<SchemaChanges> checkedChanges, ClaimsPrincipal user, DateTimeOffset now)
    {
        var changes = checkedChanges.Value!;
        var response = changes.Requested.Select(SchemaDetails.From).ToList();
        return changes.Changed.Count == 0
            ? (response, [])
            : (response, [new SchemasBulkUpdated(source.Id, changes.Changed, changes.ChangedFields, Actor.From(user), now)]);
    }
}
