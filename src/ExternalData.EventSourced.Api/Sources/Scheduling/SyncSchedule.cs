using System.Globalization;

namespace ExternalData.EventSourced.Sources;

/// <summary>What the scheduler does for a schema now: nothing, start a run, arm the next due time, or disarm.</summary>
public abstract record ScheduleDecision
{
    public static readonly ScheduleDecision Nothing = new NothingToDo();

    private sealed record NothingToDo : ScheduleDecision;
}

public sealed record RunNow(string Trigger) : ScheduleDecision;

public sealed record ArmAt(DateTimeOffset DueAt) : ScheduleDecision;

public sealed record Disarm : ScheduleDecision;

/// <summary>
/// When a schema runs (SYNC.md §5), as pure functions of its settings and sync state: the first run as soon as it is
/// enabled, then every <c>sync_frequency</c> after the last run started, anchored at <c>sync_time_of_day</c> (UTC) for
/// daily and longer frequencies; <c>never</c> (stored as null, ref §2.3) is manual only; a disabled schema, a CDC or webhook schema (fed by its own
/// stream) and a direct source's table have no schedule. A due time already past means run now: that is how the
/// reconciler catches a schedule whose message was lost (PostHog #82900).
/// </summary>
public static class SyncSchedule
{
    public const string Never = "never";

    public static TimeSpan? Interval(string? frequency) => frequency switch
    {
        null or Never => null,
        _ when frequency.EndsWith("min", StringComparison.Ordinal) => TimeSpan.FromMinutes(Number(frequency, "min")),
        _ when frequency.EndsWith("hour", StringComparison.Ordinal) => TimeSpan.FromHours(Number(frequency, "hour")),
        _ when frequency.EndsWith("day", StringComparison.Ordinal) => TimeSpan.FromDays(Number(frequency, "day")),
        _ => null,
    };

    private static int Number(string frequency, string unit) => int.Parse(frequency[..^unit.Length], CultureInfo.InvariantCulture);

    /// <summary>The first due time after <paramref name="lastRunAt"/>: one interval later, or for daily and longer
    /// frequencies with a time of day, the first such time at least one interval after the anchor day.</summary>
    public static DateTimeOffset? NextAfter(SyncSettings settings, DateTimeOffset lastRunAt)
    {
        if (Interval(settings.SyncFrequency) is not { } interval) return null;
        if (interval < TimeSpan.FromDays(1) || !TimeSpan.TryParseExact(settings.SyncTimeOfDay, @"hh\:mm\:ss", CultureInfo.InvariantCulture, out var timeOfDay))
            return lastRunAt + interval;
        var anchor = new DateTimeOffset(lastRunAt.UtcDateTime.Date + timeOfDay, TimeSpan.Zero);
        while (anchor <= lastRunAt) anchor += TimeSpan.FromDays(1);
        // The next anchored time at least most of an interval after the last run: a run late by minutes keeps its slot.
        while (anchor - lastRunAt < interval - TimeSpan.FromHours(1)) anchor += TimeSpan.FromDays(1);
        return anchor;
    }

    public static bool IsScheduled(Source? source, SourceSchema? schema) =>
        source is not null && !source.IsDirect && schema is { Removed: false, Settings.ShouldSync: true }
        // A webhook schema runs on its schedule too: each run drains the deliveries stored since the last (SYNC.md §3.5).
        && schema.Settings.SyncType is not SyncTypes.Cdc;

    /// <summary>The decision for a schema whose schedule may have changed (enabled, disabled, frequency edited, a run ended).
    /// <paramref name="rearm"/>: the schedule was found lost, so a due time that looks armed is armed again.</summary>
    public static ScheduleDecision Decide(Source? source, SourceSchema? schema, SchemaSync? state, DateTimeOffset now, bool rearm = false)
    {
        if (!IsScheduled(source, schema) || Interval(schema!.Settings.SyncFrequency) is null && state?.LastRunAt is not null)
            return state?.NextRunAt is not null ? new Disarm() : ScheduleDecision.Nothing;
        if (state?.RunningJobId is not null) return ScheduleDecision.Nothing;
        if (state?.LastRunAt is not { } lastRun)
            return Interval(schema.Settings.SyncFrequency) is null ? ScheduleDecision.Nothing : new RunNow(SyncTriggers.Create);
        var next = NextAfter(schema.Settings, lastRun)!.Value;
        if (next <= now) return new RunNow(SyncTriggers.Schedule);
        return state.NextRunAt == next && !rearm ? ScheduleDecision.Nothing : new ArmAt(next);
    }

    /// <summary>The decision when a due message arrives: only the schedule's current due time runs (an older one is stale:
    /// the schedule moved since), and only if the schema is still scheduled and not running.</summary>
    public static ScheduleDecision WhenDue(Source? source, SourceSchema? schema, SchemaSync? state, DateTimeOffset dueAt)
    {
        if (state?.NextRunAt is not { } armed || (armed - dueAt).Duration() > TimeSpan.FromMilliseconds(1)) return ScheduleDecision.Nothing;
        if (!IsScheduled(source, schema)) return new Disarm();
        return state.RunningJobId is null ? new RunNow(SyncTriggers.Schedule) : ScheduleDecision.Nothing;
    }
}
