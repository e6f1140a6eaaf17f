using System.Globalization;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>The time filters of the history, the audit feed and jobs/: ISO 8601 times, UTC when unmarked.</summary>
public static class TimeRange
{
    /// <param name="fromName">The query parameter's name, for the problem: <c>since</c> here, <c>after</c> on jobs/.</param>
    /// <param name="toName">Likewise <c>until</c>, or <c>before</c>.</param>
    public static (DateTimeOffset? From, DateTimeOffset? To, ProblemDetails? Problem) Parse(string? since, string? until, string fromName = "since", string toName = "until")
    {
        if (!TryParse(since, out var from)) return (null, null, Problems.Validation($"{fromName} must be an ISO 8601 time.", fromName, $"invalid_{fromName}"));
        if (!TryParse(until, out var to)) return (null, null, Problems.Validation($"{toName} must be an ISO 8601 time.", toName, $"invalid_{toName}"));
        return (from, to, null);
    }

    private static bool TryParse(string? text, out DateTimeOffset? time)
    {
        time = null;
        if (string.IsNullOrEmpty(text)) return true;
        if (!DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed)) return false;
        time = parsed;
        return true;
    }
}
