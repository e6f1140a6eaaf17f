using System.Text;
using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.Bench;

/// <summary>The few statistics and request helpers every scenario shares.</summary>
internal static class Measure
{
    /// <summary>The nearest-rank percentile of <paramref name="values"/>.</summary>
    public static double Percentile(IEnumerable<double> values, int p)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(p / 100.0 * sorted.Count) - 1, 0, sorted.Count - 1)];
    }

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    public static StringContent Json(JsonObject body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");
}
