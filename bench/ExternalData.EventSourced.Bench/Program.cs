using System.Globalization;
using ExternalData.EventSourced.Bench;
using ExternalData.EventSourced.LocalPostgres;

// Usage: dotnet run -c Release --project bench/ExternalData.EventSourced.Bench -- [source-model|discovery|webhooks|cold-start|patch] [--quick] [discovery sizes...]
// With no scenario named, both run. Each prints a Markdown table with its baseline ratio. Everything runs against a
// throwaway local PostgreSQL started from the server binaries, as the tests do.
var quick = args.Contains("--quick");
var scenarios = args.Where(a => a is "source-model" or "discovery" or "webhooks" or "cold-start" or "patch").ToList();
if (scenarios.Count == 0) scenarios = ["source-model", "discovery", "webhooks", "cold-start", "patch"];
var sizes = args.Where(a => int.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out _)).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).ToArray();
if (sizes.Length == 0) sizes = quick ? [100, 500] : [100, 500, 2000];

var root = Path.Combine(Path.GetTempPath(), $"externaldata-pg-bench-{Guid.NewGuid():N}");
await using var cluster = await LocalPostgresCluster.StartAsync(root, persistent: false);
foreach (var scenario in scenarios)
{
    if (scenario == "source-model") await SourceModelBench.RunAsync(cluster, quick);
    else if (scenario == "webhooks") await WebhookBench.RunAsync(cluster, quick);
    else if (scenario == "cold-start") await ColdStartBench.RunAsync(cluster, quick);
    else if (scenario == "patch") await PatchThroughputBench.RunAsync(cluster, quick, args.Contains("--profile"));
    else await DiscoveryBench.RunAsync(cluster, sizes);
    Console.WriteLine();
}
