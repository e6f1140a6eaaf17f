using ExternalData.EventSourced.Sources;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

/// <summary>A job's terminal states absorb (SYNC.md §4): a late or repeated finish never changes how it ended.</summary>
public sealed class when_a_job_ends
{
    private static readonly DateTimeOffset Now = new(2026, 12, 5, 10, 0, 0, TimeSpan.Zero);

    private static SyncJob Started() => SyncJobProjection.Create(new SyncJobStarted(
        Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), "orders", "incremental", "incremental", "schedule",
        ExternalData.EventSourced.Shared.Actor.System("scheduler"), "system", Now));

    [Fact]
    public void a_failed_job_stays_failed_when_a_late_completion_arrives()
    {
        var job = SyncJobProjection.Apply(new SyncJobFailed(Guid.NewGuid(), "connection lost", "connection_lost", Now), Started());
        job = SyncJobProjection.Apply(new SyncJobCompleted(job.Id, 10, 1, Now.AddSeconds(1)), job);
        job.Status.ShouldBe(JobStatuses.Failed);
        job.LatestError.ShouldBe("connection lost");
        job.FinishedAt.ShouldBe(Now);
    }

    [Fact]
    public void a_completed_or_cancelled_job_keeps_its_end()
    {
        var completed = SyncJobProjection.Apply(new SyncJobCompleted(Guid.NewGuid(), 10, 1, Now), Started());
        SyncJobProjection.Apply(new SyncJobFailed(completed.Id, "late", "internal", Now.AddSeconds(1)), completed).Status.ShouldBe(JobStatuses.Completed);
        var cancelled = SyncJobProjection.Apply(new SyncJobCancelled(Guid.NewGuid(), "Cancelled by a user.", ExternalData.EventSourced.Shared.Actor.System("x"), "api", Now), Started());
        SyncJobProjection.Apply(new SyncJobCompleted(cancelled.Id, 10, 1, Now.AddSeconds(1)), cancelled).Status.ShouldBe(JobStatuses.Cancelled);
    }

    [Fact]
    public void rows_grow_batch_by_batch_and_a_run_that_changed_plan_says_so()
    {
        var job = SyncJobProjection.Apply(new SyncBatchLoaded(Guid.NewGuid(), 1, 50, 50, "50", Now), Started());
        job = SyncJobProjection.Apply(new SyncBatchLoaded(job.Id, 2, 30, 80, "80", Now), job);
        job.RowsSynced.ShouldBe(80);
        job.Position.ShouldBe("80");
        job = SyncJobProjection.Apply(new SyncJobCompleted(job.Id, 80, 2, Now, Mode: SyncModes.Full, Note: "why"), job);
        job.Mode.ShouldBe(SyncModes.Full);
        job.Note.ShouldBe("why");
    }
}
