using System.Collections.Concurrent;
using System.Diagnostics;

namespace ExternalData.EventSourced.Bench;

/// <summary>
/// Where a request's time goes: every span (ASP.NET Core hosting, Wolverine, Npgsql commands) recorded while a block of
/// sequential requests runs, summed per kind and statement, divided by the request count. The spans are the libraries'
/// own activities, so the profile is of the real code paths with nothing added to them.
/// </summary>
internal sealed class SpanProfile : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentDictionary<string, (long Count, double Ms)> _spans = new();

    public SpanProfile()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is "Npgsql" or "Wolverine" or "Marten" || source.Name.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                var statement = activity.GetTagItem("db.query.text") as string ?? activity.GetTagItem("db.statement") as string;
                var name = statement is null ? $"{activity.Source.Name}: {activity.DisplayName}" : $"SQL: {Shorten(statement)}";
                _spans.AddOrUpdate(name, (1, activity.Duration.TotalMilliseconds), (_, old) => (old.Count + 1, old.Ms + activity.Duration.TotalMilliseconds));
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public void Reset() => _spans.Clear();

    public void Print(int requests, double wallMsPerRequest)
    {
        Console.WriteLine($"Spans per request ({requests} sequential requests, {wallMsPerRequest:F2} ms wall each):");
        Console.WriteLine();
        Console.WriteLine("| span | per request | ms per request |");
        Console.WriteLine("|---|---:|---:|");
        foreach (var (name, (count, ms)) in _spans.OrderByDescending(s => s.Value.Ms).Take(25))
            Console.WriteLine($"| {name.Replace("|", "\\|")} | {count / (double)requests:F2} | {ms / requests:F3} |");
        var sql = _spans.Where(s => s.Key.StartsWith("SQL: ", StringComparison.Ordinal)).ToList();
        Console.WriteLine($"| **all SQL** | {sql.Sum(s => s.Value.Count) / (double)requests:F2} | {sql.Sum(s => s.Value.Ms) / requests:F3} |");
    }

    private static string Shorten(string statement)
    {
        var flat = string.Join(' ', statement.Split((char[])['\n', '\r', '\t', ' '], StringSplitOptions.RemoveEmptyEntries));
        var limit = int.TryParse(Environment.GetEnvironmentVariable("BENCH_SQL_CHARS"), out var l) ? l : 110;
        return flat.Length > limit ? flat[..limit] + "…" : flat;
    }

    public void Dispose() => _listener.Dispose();
}
