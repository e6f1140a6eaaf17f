using System.Text.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>/health/ready as JSON: the overall status and each check's status, description and details.</summary>
public static class HealthReport
{
    public static Task WriteAsync(HttpContext context, Microsoft.Extensions.Diagnostics.HealthChecks.HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var body = new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new
            {
                status = e.Value.Status.ToString(), description = e.Value.Description, data = e.Value.Data,
            }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body));
    }
}
