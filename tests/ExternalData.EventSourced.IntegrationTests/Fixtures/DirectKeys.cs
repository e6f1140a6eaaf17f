using ExternalData.EventSourced.Infrastructure.Auth;
using Marten;

namespace ExternalData.EventSourced.IntegrationTests.Fixtures;

/// <summary>An API key written straight into a schema a service process runs on (its own store, creating nothing),
/// for tests whose service is a real process rather than the in-process host.</summary>
public static class DirectKeys
{
    public static async Task<string> IssueAsync(string connectionString, string schema, string name)
    {
        await using var store = DocumentStore.For(o =>
        {
            o.Connection(connectionString);
            o.DatabaseSchemaName = schema;
            o.AutoCreateSchemaObjects = JasperFx.AutoCreate.None;
        });
        var (key, token) = ApiKey.Issue(name, Scopes.All, [ApiKey.AllProjects], DateTimeOffset.UtcNow);
        await using var session = store.LightweightSession();
        session.Store(key);
        await session.SaveChangesAsync();
        return token;
    }
}
