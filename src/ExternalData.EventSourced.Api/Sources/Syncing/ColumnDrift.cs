using System.Globalization;
using System.Text.RegularExpressions;
using ExternalData.EventSourced.SourceTypes.Sync;

namespace ExternalData.EventSourced.Sources;

/// <summary>What a run must do to a warehouse table whose upstream table changed shape since the last run.</summary>
public sealed record ColumnDriftPlan(IReadOnlyList<WarehouseColumn> Added, IReadOnlyList<(string Column, string From, string To)> Widened, IReadOnlyList<string> Kept)
{
    public bool None => Added.Count == 0 && Widened.Count == 0;
}

/// <summary>The upstream type of a column changed in a way the warehouse column cannot follow without losing or
/// reinterpreting what it holds.</summary>
public sealed class IncompatibleColumnChangeException(string column, string warehouseType, string sourceType) : Exception(
    $"The column '{column}' changed type upstream from {warehouseType} to {sourceType}, which the warehouse column cannot hold without converting the rows already synced. Resync the schema to reload the table with the new type, or change the column back upstream.")
{
    public string Column { get; } = column;
}

/// <summary>
/// Schema evolution between runs that merge or append into an existing table (SYNC.md §5), as a pure function of the
/// warehouse table's columns and the upstream table's: a new column is added (nullable); a column whose new type holds
/// every value of its old one (int → bigint, varchar(n) → longer, numeric precision up, real → double) is widened in
/// place; a column whose new type fits inside the warehouse's (a narrowing upstream) is left as it is, since new values
/// still fit; anything else is incompatible and named. A column dropped upstream stays, NULL for rows written after.
/// A full refresh rewrites the whole table with the new types, so it needs only the added and kept columns.
/// </summary>
public static partial class WarehouseColumnDrift
{
    public static ColumnDriftPlan Plan(IReadOnlyList<WarehouseTableColumn> warehouse, IReadOnlyList<WarehouseColumn> upstream)
    {
        var existing = warehouse.ToDictionary(c => c.Name, StringComparer.Ordinal);
        var added = new List<WarehouseColumn>();
        var widened = new List<(string, string, string)>();
        foreach (var column in upstream)
        {
            if (!existing.TryGetValue(column.Name, out var current))
            {
                added.Add(column);
                continue;
            }

            if (Fits(column.Type, current.Type)) continue;
            if (Fits(current.Type, column.Type)) widened.Add((column.Name, current.Type, column.Type));
            else throw new IncompatibleColumnChangeException(column.Name, current.Type, column.Type);
        }

        var upstreamNames = upstream.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        var kept = warehouse.Where(c => !upstreamNames.Contains(c.Name) && !IsMetadata(c.Name)).Select(c => c.Name).ToList();
        return new ColumnDriftPlan(added, widened, kept);
    }

    /// <summary>The service's own columns (<c>_ph_synced_at</c> and the like), never upstream's.</summary>
    public static bool IsMetadata(string column) => column.StartsWith("_ph_", StringComparison.Ordinal);

    private static readonly string[] Integers = ["smallint", "integer", "bigint"];

    /// <summary>Whether every value of type <paramref name="from"/> is held, with the same text form, by <paramref name="into"/>.</summary>
    public static bool Fits(string from, string into)
    {
        if (from == into) return true;
        var (fromBase, fromArgs) = Parse(from);
        var (intoBase, intoArgs) = Parse(into);
        if (Array.IndexOf(Integers, fromBase) is >= 0 and var f)
            return Array.IndexOf(Integers, intoBase) is var i && i >= f || intoBase == "numeric" && (intoArgs.Length == 0 || intoArgs[0] - Scale(intoArgs) >= IntegerDigits[f]);
        if (fromBase == "real") return intoBase == "double precision";
        if (fromBase is "character varying" or "text")
            return intoBase == "text" || intoBase == "character varying" && (intoArgs.Length == 0 || fromBase == "character varying" && fromArgs.Length > 0 && intoArgs[0] >= fromArgs[0]);
        if (fromBase == "numeric" && intoBase == "numeric")
            return intoArgs.Length == 0 || fromArgs.Length > 0 && Scale(intoArgs) >= Scale(fromArgs) && intoArgs[0] - Scale(intoArgs) >= fromArgs[0] - Scale(fromArgs);
        return false;
    }

    private static readonly int[] IntegerDigits = [5, 10, 19];

    private static int Scale(int[] args) => args.Length > 1 ? args[1] : 0;

    private static (string Base, int[] Args) Parse(string type)
    {
        var match = TypeWithModifiers().Match(type);
        if (!match.Success) return (type, []);
        var args = match.Groups[2].Value.Split(',').Select(a => int.Parse(a.Trim(), CultureInfo.InvariantCulture)).ToArray();
        return (match.Groups[1].Value.Trim(), args);
    }

    [GeneratedRegex(@"^([a-z ]+)\(([\d, ]+)\)$")]
    private static partial Regex TypeWithModifiers();
}
