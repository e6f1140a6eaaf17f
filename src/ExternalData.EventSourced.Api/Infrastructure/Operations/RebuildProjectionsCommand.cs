using System.Diagnostics;
using System.Globalization;
using JasperFx.CommandLine;
using Marten;
using Npgsql;

namespace ExternalData.EventSourced.Infrastructure.Operations;

public sealed class RebuildProjectionsInput : NetCoreInput
{
    [Description("One projection to rebuild (as 'projections list' names it); every projection when left out")]
    public string ProjectionFlag { get; set; } = "";
}

/// <summary>
/// Operator command: <c>dotnet run -- rebuild-projections [--projection Source]</c>. Marten's rebuild, with a
/// progress line per projection on the terminal: events done of the store's high-water mark, percent, events/s.
/// Safe beside a running service on the same database (ADR 0029 says when to prefer blue/green instead).
/// </summary>
[Description("Rebuild projections from the events, showing percent and events/s", Name = "rebuild-projections")]
public sealed class RebuildProjectionsCommand : JasperFxAsyncCommand<RebuildProjectionsInput>
{
    public override async Task<bool> Execute(RebuildProjectionsInput input)
    {
        using var host = input.BuildHost();
        var store = (DocumentStore)host.Services.GetRequiredService<IDocumentStore>();
        // Marten quotes these names (they are meant for messages).
        var known = store.Options.Projections.AllProjectionNames().Select(n => n.Trim('\'')).Order(StringComparer.Ordinal).ToList();
        var names = input.ProjectionFlag is { Length: > 0 } one ? [one] : known;
        if (names.Except(known).FirstOrDefault() is { } unknown)
        {
            await Console.Error.WriteLineAsync($"No projection named '{unknown}'. Known: {string.Join(", ", known)}");
            return false;
        }

        var schema = store.Options.DatabaseSchemaName;
        var database = store.Storage.Database;
        var highWater = await ScalarAsync(database, $"SELECT coalesce(max(seq_id), 0) FROM {schema}.mt_events");
        using var daemon = await store.BuildProjectionDaemonAsync();
        foreach (var name in names)
        {
            var clock = Stopwatch.StartNew();
            var rebuild = daemon.RebuildProjectionAsync(name, TimeSpan.FromMinutes(30), CancellationToken.None);
            while (!rebuild.IsCompleted)
            {
                await Task.WhenAny(rebuild, Task.Delay(500));
                var done = await ScalarAsync(database,
                    $"SELECT coalesce(max(last_seq_id), 0) FROM {schema}.mt_event_progression WHERE name LIKE '{name.Replace("'", "''")}:%'");
                Progress(name, done, highWater, clock.Elapsed, final: false);
            }

            await rebuild;
            Progress(name, highWater, highWater, clock.Elapsed, final: true);
        }

        return true;
    }

    private static void Progress(string name, long done, long highWater, TimeSpan elapsed, bool final)
    {
        var percent = highWater == 0 ? 100 : Math.Min(100, done * 100 / highWater);
        var rate = elapsed.TotalSeconds > 0 ? done / elapsed.TotalSeconds : 0;
        var line = string.Create(CultureInfo.InvariantCulture,
            $"{name}: {percent,3}% ({done:N0} of {highWater:N0} events, {rate:N0} events/s){(final ? $", done in {elapsed.TotalSeconds:F1} s" : "")}");
        if (final) Console.WriteLine(line);
        else if (!Console.IsOutputRedirected) Console.Write($"\r{line}");
        else Console.WriteLine(line);
    }

    private static async Task<long> ScalarAsync(Marten.Storage.IMartenDatabase database, string sql)
    {
        await using var connection = database.CreateConnection();
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(), CultureInfo.InvariantCulture);
    }
}
