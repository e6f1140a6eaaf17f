namespace ExternalData.EventSourced.Infrastructure.LocalPostgres;

/// <summary>
/// The default run: with no <c>ConnectionStrings:Marten</c> configured, start a local PostgreSQL in the data
/// folder under the working directory and stop it when the host stops (Ctrl-C / SIGTERM).
/// </summary>
public static class EmbeddedDatabase
{
    public const string LocalDataFolder = ".local";

    public static async Task<string> ResolveConnectionStringAsync(WebApplicationBuilder builder)
    {
        var configured = builder.Configuration.GetConnectionString("Marten");
        if (!string.IsNullOrWhiteSpace(configured)) return configured;

        var cluster = await LocalPostgresCluster.StartAsync(
            Path.Combine(builder.Environment.ContentRootPath, LocalDataFolder, "postgres"),
            persistent: true,
            log: message => Console.Error.WriteLine(message));
        builder.Services.AddHostedService(_ => new StopOnShutdown(cluster));
        // Commands (api-keys, codegen…) never start the host, so stop the cluster when the process ends too.
#pragma warning disable VSTHRD002 // ProcessExit handlers are synchronous by nature; the process is ending anyway.
        AppDomain.CurrentDomain.ProcessExit += (_, _) => cluster.StopAsync().GetAwaiter().GetResult();
#pragma warning restore VSTHRD002
        return cluster.ConnectionString;
    }

    private sealed class StopOnShutdown(LocalPostgresCluster cluster) : IHostedService
    {
        public Task StartAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StopAsync(CancellationToken ct) => cluster.StopAsync(evenIfAttached: true);
    }
}
