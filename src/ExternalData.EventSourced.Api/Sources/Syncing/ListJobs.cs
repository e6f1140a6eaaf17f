using ExternalData.EventSourced.Shared;
using Marten;
using Microsoft.AspNetCore.Mvc;
using Wolverine.Http;

namespace ExternalData.EventSourced.Sources;

/// <summary>A job as PostHog shows it (ref §4.3), plus [beyond] what the run did (<c>mode</c>, <c>batches</c>, and a
/// <c>note</c> when it did other than planned), why it ran (<c>trigger</c>) and the class of its failure.</summary>
public sealed record JobDetails(
    Guid Id, DateTimeOffset CreatedAt, string? CreatedBy, DateTimeOffset? FinishedAt, string Status, JobSchema Schema, long RowsSynced,
    string? LatestError, string? WorkflowRunId, string? CdcWriteMode, string Mode, int Batches, string Trigger, string? ErrorClass, string? Note);

public sealed record JobSchema(Guid Id, string Name, string? Label, bool ShouldSync, DateTimeOffset? LastSyncedAt, string? SyncType);

/// <summary>GET external_data_sources/{id}/jobs/ (ref §5.20): up to 50 jobs, newest first, bounded by <c>created_at</c>
/// (exclusive) and filtered by schema name; a bare array.</summary>
public static class ListJobsEndpoint
{
    public const int Limit = 50;

    [WolverineGet("/api/projects/{project_id}/external_data_sources/{id}/jobs")]
    [ProducesResponseType<IReadOnlyList<JobDetails>>(StatusCodes.Status200OK)]
    public static async Task<IResult> Get(Guid id, string? after, string? before, string[]? schemas, IQuerySession session, CancellationToken ct)
    {
        var (from, to, badTime) = TimeRange.Parse(after, before, "after", "before");
        if (badTime is not null) return Results.Problem(badTime);
        if (await session.LoadAsync<Source>(id, ct) is null) return Results.Problem(Problems.NotFound());

        IQueryable<SyncJob> query = session.Query<SyncJob>().Where(j => j.SourceId == id);
        if (from is { } a) query = query.Where(j => j.CreatedAt > a);
        if (to is { } b) query = query.Where(j => j.CreatedAt < b);
        if (schemas is { Length: > 0 }) query = query.Where(j => schemas.Contains(j.SchemaName));
        var jobs = await query.OrderByDescending(j => j.CreatedAt).Take(Limit).ToListAsync(ct);

        var schemaIds = jobs.Select(j => j.SchemaId).Distinct().ToArray();
        var tables = (await session.LoadManyAsync<SourceSchema>(ct, schemaIds)).ToDictionary(s => s.Id);
        var states = (await session.LoadManyAsync<SchemaSync>(ct, schemaIds)).ToDictionary(s => s.Id);
        return Results.Json(jobs.Select(j => Details(j, tables.GetValueOrDefault(j.SchemaId), states.GetValueOrDefault(j.SchemaId))).ToList());
    }

    public static JobDetails Details(SyncJob job, SourceSchema? schema, SchemaSync? state) => new(
        job.Id, job.CreatedAt, job.CreatedBy, job.FinishedAt, job.Status,
        new JobSchema(job.SchemaId, job.SchemaName, schema?.Facts.Label, schema?.Settings.ShouldSync ?? false, state?.LastSyncedAt, schema?.Settings.SyncType ?? job.SyncType),
        job.RowsSynced, job.LatestError, null, null, job.Mode, job.Batches, job.Trigger, job.ErrorClass, job.Note);
}
