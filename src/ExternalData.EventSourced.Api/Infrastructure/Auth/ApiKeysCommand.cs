using JasperFx.CommandLine;
using Marten;

namespace ExternalData.EventSourced.Infrastructure.Auth;

public enum ApiKeyAction
{
    create,
    revoke,
    list,
}

public sealed class ApiKeysInput : NetCoreInput
{
    [Description("create, revoke or list")]
    public ApiKeyAction Action { get; set; }

    [Description("Name of the new key")]
    public string NameFlag { get; set; } = "";

    [Description("Comma-separated scopes, e.g. external_data_source:read,external_data_source:write")]
    public string ScopesFlag { get; set; } = string.Join(',', Scopes.All);

    [Description("Comma-separated project ids, or 'all'")]
    public string ProjectsFlag { get; set; } = "";

    [Description("Id of the key to revoke")]
    public string IdFlag { get; set; } = "";
}

/// <summary>
/// Operator command: <c>dotnet run -- api-keys create --name N --scopes ... --projects 1,2</c>. The new token is
/// printed once, alone on the last line of standard output (everything else goes to standard error), so
/// scripts can capture it with <c>| tail -1</c>.
/// </summary>
[Description("Create, revoke or list personal API keys", Name = "api-keys")]
public sealed class ApiKeysCommand : JasperFxAsyncCommand<ApiKeysInput>
{
    public override async Task<bool> Execute(ApiKeysInput input)
    {
        using var host = input.BuildHost();
        var store = host.Services.GetRequiredService<IDocumentStore>();
        await store.Storage.ApplyAllConfiguredChangesToDatabaseAsync();
        await using var session = store.LightweightSession();

        switch (input.Action)
        {
            case ApiKeyAction.create:
                var scopes = Split(input.ScopesFlag);
                var projects = Split(input.ProjectsFlag);
                var unknown = scopes.Except(Scopes.All).ToList();
                if (input.NameFlag.Trim().Length == 0 || projects.Count == 0 || scopes.Count == 0 || unknown.Count > 0)
                {
                    await Console.Error.WriteLineAsync(unknown.Count > 0
                        ? $"Unknown scope(s): {string.Join(", ", unknown)}. Known: {string.Join(", ", Scopes.All)}"
                        : "create needs --name, --scopes and --projects (ids or 'all').");
                    return false;
                }

                var (key, token) = ApiKey.Issue(input.NameFlag.Trim(), scopes, projects, DateTimeOffset.UtcNow);
                session.Store(key);
                await session.SaveChangesAsync();
                await Console.Error.WriteLineAsync($"Created API key {key.Id} '{key.Name}' (scopes: {string.Join(",", key.Scopes)}; projects: {string.Join(",", key.Projects)}). It is shown once:");
                Console.WriteLine(token);
                return true;

            case ApiKeyAction.revoke:
                if (!Guid.TryParse(input.IdFlag, out var id) || await session.LoadAsync<ApiKey>(id) is not { } existing)
                {
                    await Console.Error.WriteLineAsync("revoke needs --id of an existing key (see 'api-keys list').");
                    return false;
                }

                existing.RevokedAt ??= DateTimeOffset.UtcNow;
                session.Store(existing);
                await session.SaveChangesAsync();
                await Console.Error.WriteLineAsync($"Revoked API key {existing.Id} '{existing.Name}'.");
                return true;

            default:
                foreach (var k in await session.Query<ApiKey>().OrderBy(k => k.CreatedAt).ToListAsync())
                    Console.WriteLine($"{k.Id}  {k.TokenPrefix}…  {k.Name}  scopes={string.Join(",", k.Scopes)}  projects={string.Join(",", k.Projects)}  {(k.RevokedAt is null ? "active" : "revoked " + k.RevokedAt)}");
                return true;
        }
    }

    private static List<string> Split(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct().ToList();
}
