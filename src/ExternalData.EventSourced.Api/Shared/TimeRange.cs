using System.Globalization;
using ExternalData.EventSourced.Infrastructure.Http;
using Microsoft.AspNetCore.Mvc;

namespace ExternalData.EventSourced.Shared;

/// <summary>The <c>since</c>/<c>until</c> filters of the history and the audit feed: ISO 8601 times, UTC when unmarked.</summary>
public static class TimeRange
{
    public static (DateTimeOffset? From, DateTimeOffset? To, ProblemDetails? Problem) Parse(string? since, string? until)
    {
        if (!TryParse(since, out var from)) return (null, null, Problems.Validation("since must be an ISO 8601 time.", "since", "invalid_since"));
        if (!TryParse(until, out var to)) return (null, null, Problems.Validation("until must be an ISO 8601 time.", "until", "invalid_until"));
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
