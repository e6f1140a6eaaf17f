using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ExternalData.EventSourced.SourceTypes.Configuration;
using ExternalData.EventSourced.SourceTypes.Discovery;
using Microsoft.Extensions.Options;
using Stripe;

namespace ExternalData.EventSourced.SourceTypes.Stripe;

public sealed class StripeOptions
{
    public const string Section = "ExternalData:Stripe";

    /// <summary>Stripe's API base. Tests point it at a local server that speaks Stripe's protocol.</summary>
    public string ApiBase { get; set; } = "https://api.stripe.com";

    /// <summary>How many 429s in a row one request of a run waits out before the run gives up for now (retryable).</summary>
    public int RateLimitedTries { get; set; } = 40;
}

/// <summary>A Stripe account read with a secret or restricted API key, through the Stripe.net client (API.md §2).</summary>
public sealed partial class StripeSourceType(IOptionsMonitor<StripeOptions> options) : ISourceType
{
    public const string TypeName = "Stripe";
    private const int ProbeConcurrency = 8;

    public SourceTypeDefinition Definition { get; } = new(
        Name: TypeName,
        Label: "Stripe",
        Category: "Payments & billing",
        Caption: "Enter a Stripe restricted API key with read access to the resources you want to sync.",
        DocsUrl: "https://posthog.com/docs/cdp/sources/stripe",
        Fields:
        [
            // PostHog also offers an OAuth option; it needs an OAuth integration this service does not have, so it is not offered.
            new SelectField("auth_method", "Authentication", true, "api_key",
            [
                new SelectOption("Restricted API key", "api_key",
                    [new InputField("stripe_secret_key", "API key", "password", true, "rk_live_...", Secret: true)]),
            ]),
            new InputField("stripe_account_id", "Account id", "text", false, "acct_...", "Only for Stripe Connect accounts."),
        ],
        Capabilities: new SourceCapabilities(Incremental: true, Append: true, Webhooks: true, Cdc: false, DirectQuery: false, ColumnSelection: false),
        ConnectionTargetFields: ["stripe_account_id"],
        DocumentedTables: StripeTables.All.Select(StripeTables.ToCatalog).ToList(),
        SuggestedTables: ["Customer", "Charge", "Invoice", "Subscription", "Product"]);

    /// <summary>PostHog also accepts a bare <c>stripe_secret_key</c> at the top level; fold it into the select.</summary>
    public JsonObject Prepare(JsonObject input)
    {
        if (input["auth_method"] is not null || input["stripe_secret_key"] is null) return input;
        var output = (JsonObject)input.DeepClone();
        output["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = output["stripe_secret_key"]!.DeepClone() };
        output.Remove("stripe_secret_key");
        return output;
    }

    public async Task<SourceCheck> CheckCredentialsAsync(JsonObject config, CancellationToken ct)
    {
        try
        {
            await new AccountService(Client(config)).GetSelfAsync(cancellationToken: ct);
            return SourceCheck.Success;
        }
        catch (StripeException e) when (e.HttpStatusCode == HttpStatusCode.Forbidden)
        {
            // A restricted key without account access is still a valid key; per-table probes say what it can read.
            return SourceCheck.Success;
        }
        catch (StripeException e)
        {
            return Classify(e);
        }
        catch (HttpRequestException)
        {
            return SourceCheck.Failed("stripe_unreachable", "Could not reach Stripe. Try again in a moment.");
        }
    }

    public async Task<DiscoveryResult> DiscoverAsync(JsonObject config, CancellationToken ct)
    {
        var client = Client(config);
        var permissionErrors = new System.Collections.Concurrent.ConcurrentDictionary<string, string?>();
        try
        {
            await Parallel.ForEachAsync(StripeTables.All.Where(t => t.ListPath is not null), new ParallelOptions { MaxDegreeOfParallelism = ProbeConcurrency, CancellationToken = ct },
                async (table, token) => permissionErrors[table.Name] = await ProbeAsync(client, table, token));
        }
        catch (StripeException e)
        {
            // Stripe's message is not repeated (it quotes part of the key); the status says enough.
            return new DiscoveryResult([], Classify(e));
        }
        catch (HttpRequestException)
        {
            return DiscoveryResult.Failed("stripe_unreachable", "Could not reach Stripe. Try again in a moment.");
        }

        return DiscoveryResult.Of(StripeTables.All.Select(t => new DiscoveredTable(
            Name: t.Name,
            Label: t.Name,
            Description: $"Stripe {t.Name} objects.",
            Columns: [],
            IncrementalFields: t.CursorField is { } f ? [f] : [],
            // Beyond PostHog (which has none for Stripe): the Events API carries updates and deletions (SYNC.md §3.5).
            SupportsIncremental: ChangeTypesFor(t).Count > 0,
            SupportsAppend: t.SupportsAppend,
            SupportsCdc: false,
            SupportsWebhooks: t.Webhooks,
            WebhookOnly: t.WebhookOnly,
            RowEstimate: null,
            DetectedPrimaryKeys: ["id"],
            PermissionError: permissionErrors.GetValueOrDefault(t.Name),
            RlsWarning: null,
            IncrementalByDefault: false)).ToList());
    }

    /// <summary>Lists one object of the resource: 403 means the restricted key lacks that resource's read permission.</summary>
    private static async Task<string?> ProbeAsync(StripeClient client, StripeTable table, CancellationToken ct)
    {
        try
        {
            await client.RawRequestAsync(HttpMethod.Get, table.ListPath + "?limit=1", cancellationToken: ct);
            return null;
        }
        catch (StripeException e) when (e.HttpStatusCode == HttpStatusCode.Forbidden)
        {
            // Stripe's own message names the permission but also part of the key; only the permission is repeated.
            var permission = PermissionName().Match(e.StripeError?.Message ?? "").Value;
            return permission.Length > 0
                ? $"Stripe credentials lack permissions for {table.Name}. Give the restricted key the '{permission}' permission ({table.PermissionHint}: Read)."
                : $"Stripe credentials lack permissions for {table.Name}. Give the restricted key read access to {table.PermissionHint}.";
        }
    }

    [GeneratedRegex(@"\brak_[a-z0-9_]+\b")]
    private static partial Regex PermissionName();

    private StripeClient Client(JsonObject config) => new(new StripeClientOptions
    {
        ApiKey = ConfigSchema.Lookup(config, "auth_method.stripe_secret_key"),
        ApiBase = options.CurrentValue.ApiBase,
        StripeAccount = ConfigSchema.Lookup(config, "stripe_account_id") is { Length: > 0 } account ? account : null,
    });

    private static SourceCheck Classify(StripeException e) => e.HttpStatusCode switch
    {
        HttpStatusCode.Unauthorized => SourceCheck.Failed("invalid_credentials",
            "Stripe rejected the API key. Check that it is a live or test secret key or restricted key, and that it has not been rolled."),
        HttpStatusCode.TooManyRequests => SourceCheck.Failed("rate_limited", "Stripe is rate limiting requests for this key. Try again in a moment."),
        HttpStatusCode.NotFound => SourceCheck.Failed("stripe_account_not_found", "Stripe did not find that account. Check the account id."),
        _ => SourceCheck.Failed("stripe_error", "Stripe could not be read with these credentials right now. Check the API key and account id, then try again."),
    };
}
