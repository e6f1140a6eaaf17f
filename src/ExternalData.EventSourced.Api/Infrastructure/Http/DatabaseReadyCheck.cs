using Marten;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>Ready = the database answers and our schema (the event table) exists.</summary>
public sealed class DatabaseReadyCheck(IDocumentStore store) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct = default)
    {
        try
        {
            await using var connection = store.Storage.Database.CreateConnection();
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand("SELECT to_regclass(@table) IS NOT NULL", connection);
            command.Parameters.AddWithValue("table", $"{store.Options.Events.DatabaseSchemaName}.mt_events");
            return await command.ExecuteScalarAsync(ct) is true
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("The event store schema has not been applied.");
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return HealthCheckResult.Unhealthy("The database is not reachable: " + e.GetType().Name);
        }
    }
}
