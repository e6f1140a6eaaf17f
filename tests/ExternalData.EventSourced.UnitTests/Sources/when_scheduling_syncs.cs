using ExternalData.EventSourced.Shared;
using ExternalData.EventSourced.Sources;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Sources;

/// <summary>When a schema runs (SYNC.md §5), decided from its settings and sync state alone.</summary>
public sealed class when_scheduling_syncs
{
    private static readonly DateTimeOffset Now = new(2026, 12, 5, 10, 0, 0, TimeSpan.Zero);

    private static readonly Source Postgres = new() { Id = Guid.NewGuid(), ProjectId = "1", SourceType = "Postgres", AccessMethod = AccessMethods.Warehouse };

    private static SourceSchema Schema(string? frequency = "6hour", bool enabled = true, string syncType = SyncTypes.FullRefresh, string? timeOfDay = null) => new()
    {
        Id = Guid.NewGuid(), SourceId = Postgres.Id, Name = "orders",
        Settings = SyncSettings.Disabled with { ShouldSync = enabled, SyncType = syncType, SyncFrequency = frequency, SyncTimeOfDay = timeOfDay },
    };

    private static SchemaSync Ran(DateTimeOffset at, DateTimeOffset? nextRunAt = null, bool running = false) =>
        new() { LastRunAt = at, NextRunAt = nextRunAt, RunningJobId = running ? Guid.NewGuid() : null, LastStatus = JobStatuses.Completed };

    [Fact]
    public void an_enabled_schema_that_never_ran_runs_now_and_a_manual_one_waits()
    {
        SyncSchedule.Decide(Postgres, Schema(), null, Now).ShouldBe(new RunNow(SyncTriggers.Create));
        SyncSchedule.Decide(Postgres, Schema(frequency: null), null, Now).ShouldBe(ScheduleDecision.Nothing, "never: manual only");
        SyncSchedule.Decide(Postgres, Schema(enabled: false), null, Now).ShouldBe(ScheduleDecision.Nothing);
        SyncSchedule.Decide(Postgres, Schema(syncType: SyncTypes.Cdc), null, Now).ShouldBe(ScheduleDecision.Nothing, "CDC streams, it is not scheduled");
    }

    [Fact]
    public void after_a_run_the_next_is_armed_one_interval_later_once()
    {
        var last = Now.AddHours(-1);
        SyncSchedule.Decide(Postgres, Schema(), Ran(last), Now).ShouldBe(new ArmAt(last.AddHours(6)));
        SyncSchedule.Decide(Postgres, Schema(), Ran(last, nextRunAt: last.AddHours(6)), Now).ShouldBe(ScheduleDecision.Nothing, "armed already");
        SyncSchedule.Decide(Postgres, Schema(), Ran(last, running: true), Now).ShouldBe(ScheduleDecision.Nothing, "the running job's end arms it");
        SyncSchedule.Decide(Postgres, Schema(frequency: "30min"), Ran(Now.AddHours(-2)), Now).ShouldBe(new RunNow(SyncTriggers.Schedule), "overdue: run now");
    }

    [Fact]
    public void disabling_or_making_it_manual_disarms_it()
    {
        var armed = Ran(Now.AddHours(-1), nextRunAt: Now.AddHours(5));
        SyncSchedule.Decide(Postgres, Schema(enabled: false), armed, Now).ShouldBeOfType<Disarm>();
        SyncSchedule.Decide(Postgres, Schema(frequency: null), armed, Now).ShouldBeOfType<Disarm>();
    }

    [Fact]
    public void daily_runs_are_anchored_at_the_time_of_day()
    {
        var settings = Schema(frequency: "24hour", timeOfDay: "03:30:00").Settings;
        SyncSchedule.NextAfter(settings, new DateTimeOffset(2026, 12, 5, 3, 31, 0, TimeSpan.Zero)).ShouldBe(new DateTimeOffset(2026, 12, 6, 3, 30, 0, TimeSpan.Zero));
        SyncSchedule.NextAfter(settings, new DateTimeOffset(2026, 12, 5, 1, 0, 0, TimeSpan.Zero))
            .ShouldBe(new DateTimeOffset(2026, 12, 6, 3, 30, 0, TimeSpan.Zero), "a first run at 01:00 is followed by tomorrow's slot, not one 2.5 hours later");
        SyncSchedule.NextAfter(Schema(frequency: "7day", timeOfDay: "00:00:00").Settings, new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero))
            .ShouldBe(new DateTimeOffset(2026, 12, 13, 0, 0, 0, TimeSpan.Zero), "never sooner than the interval asks: the first midnight 7 days on");
        SyncSchedule.NextAfter(Schema(frequency: "5min", timeOfDay: "03:30:00").Settings, Now).ShouldBe(Now.AddMinutes(5), "sub-daily frequencies ignore the time of day");
    }

    [Fact]
    public void a_due_message_runs_only_the_schedule_it_was_armed_for()
    {
        var due = Now.AddHours(5);
        SyncSchedule.WhenDue(Postgres, Schema(), Ran(Now.AddHours(-1), nextRunAt: due), due).ShouldBe(new RunNow(SyncTriggers.Schedule));
        SyncSchedule.WhenDue(Postgres, Schema(), Ran(Now.AddHours(-1), nextRunAt: due.AddHours(1)), due).ShouldBe(ScheduleDecision.Nothing, "the schedule moved since: stale");
        SyncSchedule.WhenDue(Postgres, Schema(), Ran(Now.AddHours(-1), nextRunAt: due, running: true), due).ShouldBe(ScheduleDecision.Nothing);
        SyncSchedule.WhenDue(Postgres, Schema(enabled: false), Ran(Now.AddHours(-1), nextRunAt: due), due).ShouldBeOfType<Disarm>();
    }

    [Fact]
    public void the_reconciler_finds_a_schedule_lost_when_never_armed_overdue_or_its_message_is_gone()
    {
        var grace = TimeSpan.FromMinutes(2);
        var due = Now.AddHours(3);
        var armed = Ran(Now.AddHours(-3), due);
        armed.Id = Guid.NewGuid();
        var withMessage = new[] { (armed.Id, due) }.ToLookup(x => x.Item1, x => x.Item2);
        var none = Array.Empty<(Guid, DateTimeOffset)>().ToLookup(x => x.Item1, x => x.Item2);

        ReconcileSyncSchedulesHandler.Lost(armed, withMessage, Now, grace).ShouldBeNull("armed, its message waiting");
        ReconcileSyncSchedulesHandler.Lost(armed, none, Now, grace).ShouldNotBeNull().ShouldContain("gone from the store");
        ReconcileSyncSchedulesHandler.Lost(null, none, Now, grace).ShouldBe("it was never armed");
        ReconcileSyncSchedulesHandler.Lost(Ran(Now.AddHours(-7)), none, Now, grace).ShouldBe("it was not armed");
        ReconcileSyncSchedulesHandler.Lost(Ran(Now.AddHours(-7), Now.AddMinutes(-1)), none, Now, grace).ShouldBeNull("a minute late is within the grace");
        ReconcileSyncSchedulesHandler.Lost(Ran(Now.AddHours(-7), Now.AddMinutes(-5)), none, Now, grace).ShouldNotBeNull().ShouldContain("did not fire");
        ReconcileSyncSchedulesHandler.Lost(Ran(Now.AddHours(-7), running: true), none, Now, grace).ShouldBeNull("a running schema's end arms the next");
    }

    [Fact]
    public void a_lost_schedule_is_armed_again_for_the_same_time()
    {
        var schema = Schema();
        var state = Ran(Now.AddHours(-1), Now.AddHours(5));
        SyncSchedule.Decide(Postgres, schema, state, Now).ShouldBe(ScheduleDecision.Nothing);
        SyncSchedule.Decide(Postgres, schema, state, Now, rearm: true).ShouldBe(new ArmAt(Now.AddHours(5)));
    }
}
