using Marten;

namespace ExternalData.EventSourced.Infrastructure.Auth;

/// <summary>In Development, creates a local admin key on the first start (no keys yet) and prints it once.</summary>
public sealed class DevelopmentAdminKey(IDocumentStore store, ILogger<DevelopmentAdminKey> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken ct)
    {
        await using var session = store.LightweightSession();
        if (await session.Query<ApiKey>().AnyAsync(ct)) return;

        var (key, token) = ApiKey.Issue("local-admin", Scopes.All, [ApiKey.AllProjects], DateTimeOffset.UtcNow);
        session.Store(key);
        await session.SaveChangesAsync(ct);
        logger.LogInformation("Created the local admin API key {KeyId} (all projects, read and write)", key.Id);
        // Printed, not logged: the token must not land in log storage. It is shown this once only.
        Console.WriteLine();
        Console.WriteLine("  Local admin API key (shown once, keep it):");
        Console.WriteLine($"    {token}");
        Console.WriteLine("  Use it as: Authorization: Bearer <key>");
        Console.WriteLine();
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
}
