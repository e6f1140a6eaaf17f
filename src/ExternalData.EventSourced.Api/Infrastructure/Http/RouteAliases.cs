namespace ExternalData.EventSourced.Infrastructure.Http;

/// <summary>
/// PostHog serves every route under both <c>/api/projects/{id}/</c> and <c>/api/environments/{id}/</c>, with a
/// trailing slash. Rather than declaring each endpoint twice, the path is normalised before routing, as PostHog's
/// own EnvironmentsRewriteMiddleware does (ADR 0004). The original path is kept for building links.
/// </summary>
public static class RouteAliases
{
    private const string EnvironmentsPrefix = "/api/environments/";
    private const string ProjectsPrefix = "/api/projects/";
    public const string OriginalPathItem = "externaldata.original_path";

    public static IApplicationBuilder UseRouteAliases(this IApplicationBuilder app) => app.Use((context, next) =>
    {
        var path = context.Request.Path.Value ?? "/";
        context.Items[OriginalPathItem] = path;
        if (path.StartsWith(EnvironmentsPrefix, StringComparison.Ordinal)) path = ProjectsPrefix + path[EnvironmentsPrefix.Length..];
        if (path.Length > 1 && path.EndsWith('/')) path = path.TrimEnd('/');
        context.Request.Path = path;
        return next(context);
    });

    /// <summary>The path the caller used (alias and slash included), so <c>next</c>/<c>previous</c>/<c>Location</c> speak their dialect.</summary>
    public static string OriginalPath(this HttpContext context) =>
        context.Items[OriginalPathItem] as string ?? context.Request.Path.Value ?? "/";

    /// <summary>The collection URL in the caller's dialect: <c>/api/{projects|environments}/{id}/external_data_sources/</c>.</summary>
    public static string SourcesBasePath(this HttpContext context, string projectId)
    {
        var scope = context.OriginalPath().StartsWith(EnvironmentsPrefix, StringComparison.Ordinal) ? "environments" : "projects";
        return $"/api/{scope}/{projectId}/external_data_sources/";
    }
}
