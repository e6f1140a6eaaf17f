using System.Globalization;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using Npgsql;

namespace ExternalData.EventSourced.SourceTypes.Postgres;

internal static class PostgresConnectionString
{
    /// <summary>The Npgsql settings for a validated config: TLS preferred, 10 s connect timeout, no pooling
    /// (these connections are short checks, not a workload).</summary>
    public static NpgsqlConnectionStringBuilder Build(JsonObject config) => new()
    {
        Host = ConfigSchema.Lookup(config, "host"),
        Port = int.TryParse(ConfigSchema.Lookup(config, "port"), CultureInfo.InvariantCulture, out var port) ? port : 5432,
        Database = ConfigSchema.Lookup(config, "database"),
        Username = ConfigSchema.Lookup(config, "user"),
        Password = ConfigSchema.Lookup(config, "password"),
        SslMode = SslMode.Prefer,
        Timeout = 10,
        CommandTimeout = 30,
        Pooling = false,
        ApplicationName = "externaldata-eventsourced",
    };

    /// <summary>Fills host, port, database, user and password that the caller left out from
    /// <c>connection_string</c> (URI or key=value form). Explicit fields win.</summary>
    public static JsonObject FillFieldsFrom(JsonObject input)
    {
        var text = ConfigSchema.Lookup(input, "connection_string");
        if (string.IsNullOrEmpty(text)) return input;

        var parsed = TryParse(text);
        if (parsed is null) return input;

        var output = (JsonObject)input.DeepClone();
        void Fill(string key, string? value)
        {
            if (!string.IsNullOrEmpty(value) && string.IsNullOrEmpty(ConfigSchema.Lookup(output, key))) output[key] = value;
        }

        Fill("host", parsed.Value.Host);
        Fill("port", parsed.Value.Port);
        Fill("database", parsed.Value.Database);
        Fill("user", parsed.Value.User);
        Fill("password", parsed.Value.Password);
        return output;
    }

    private static (string? Host, string? Port, string? Database, string? User, string? Password)? TryParse(string text)
    {
        if (text.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri)) return null;
            var userInfo = uri.UserInfo.Split(':', 2);
            return (uri.Host,
                uri.Port > 0 ? uri.Port.ToString(CultureInfo.InvariantCulture) : null,
                Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')),
                userInfo.Length > 0 ? Uri.UnescapeDataString(userInfo[0]) : null,
                userInfo.Length > 1 ? Uri.UnescapeDataString(userInfo[1]) : null);
        }

        try
        {
            var b = new NpgsqlConnectionStringBuilder(text);
            return (b.Host, b.Port > 0 ? b.Port.ToString(CultureInfo.InvariantCulture) : null, b.Database, b.Username, b.Password);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }
}
