using System.Net;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Webhooks;
using Stripe;

namespace ExternalData.EventSourced.SourceTypes.Stripe;

/// <summary>Stripe's webhook endpoints, through Stripe.net's <see cref="WebhookEndpointService"/>, and deliveries
/// verified by its <see cref="EventUtility"/> (HMAC-SHA256 over "t.raw body", any of several v1, 300 s tolerance).</summary>
public sealed partial class StripeSourceType : IWebhookProvider
{
    public const string EndpointDescription = "PostHog data warehouse webhook";
    public const long ToleranceSeconds = 300;

    /// <summary>Per webhook-capable table (ref §12.5): the event-name prefix it subscribes to and the object type its
    /// deliveries carry in <c>data.object.object</c>.</summary>
    private static readonly Dictionary<string, (string EventPrefix, string ObjectType)> Routes = new(StringComparer.Ordinal)
    {
        ["BalanceTransaction"] = ("transfer", "balance_transaction"),
        ["Charge"] = ("charge", "charge"),
        ["Customer"] = ("customer", "customer"),
        ["Dispute"] = ("charge.dispute", "dispute"),
        ["InvoiceItem"] = ("invoiceitem", "invoiceitem"),
        ["Invoice"] = ("invoice", "invoice"),
        ["Payout"] = ("payout", "payout"),
        ["Price"] = ("price", "price"),
        ["Product"] = ("product", "product"),
        ["Refund"] = ("refund", "refund"),
        ["Subscription"] = ("customer.subscription", "subscription"),
        ["CreditNote"] = ("credit_note", "credit_note"),
        ["CustomerPaymentMethod"] = ("payment_method", "payment_method"),
        ["Coupon"] = ("coupon", "coupon"),
        ["Discount"] = ("customer.discount", "discount"),
        ["PaymentIntent"] = ("payment_intent", "payment_intent"),
        ["CheckoutSession"] = ("checkout.session", "checkout.session"),
        ["SubscriptionSchedule"] = ("subscription_schedule", "subscription_schedule"),
        ["PromotionCode"] = ("promotion_code", "promotion_code"),
        ["Plan"] = ("plan", "plan"),
        ["TaxRate"] = ("tax_rate", "tax_rate"),
        ["TaxId"] = ("customer.tax_id", "tax_id"),
        ["Quote"] = ("quote", "quote"),
        ["BillingMeter"] = ("billing.meter", "billing.meter"),
        ["BillingCreditGrant"] = ("billing.credit_grant", "billing.credit_grant"),
        ["BillingCreditBalanceTransaction"] = ("billing.credit_balance_transaction", "billing.credit_balance_transaction"),
        ["InvoicePayment"] = ("invoice_payment", "invoice_payment"),
        ["SetupIntent"] = ("setup_intent", "setup_intent"),
        ["PaymentLink"] = ("payment_link", "payment_link"),
        ["Transfer"] = ("transfer", "transfer"),
        ["ApplicationFee"] = ("application_fee", "application_fee"),
        ["Topup"] = ("topup", "topup"),
        ["Review"] = ("review", "review"),
        ["EarlyFraudWarning"] = ("radar.early_fraud_warning", "radar.early_fraud_warning"),
    };

    /// <summary>Every event name the pinned Stripe.net knows (PostHog subscribes from its SDK's list too).</summary>
    private static readonly IReadOnlyList<string> KnownEvents = typeof(EventTypes)
        .GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral && f.FieldType == typeof(string))
        .Select(f => (string)f.GetRawConstantValue()!).Distinct().Order(StringComparer.Ordinal).ToList();

    public IReadOnlyList<string> EventsFor(IEnumerable<string> tables)
    {
        var prefixes = tables.Where(Routes.ContainsKey).Select(t => Routes[t].EventPrefix + ".").Distinct().ToList();
        return KnownEvents.Where(e => prefixes.Any(p => e.StartsWith(p, StringComparison.Ordinal))).ToList();
    }

    public string? TableForObjectType(string objectType) => Routes.FirstOrDefault(r => r.Value.ObjectType == objectType).Key;

    public string? ObjectTypeFor(string table) => Routes.TryGetValue(table, out var route) ? route.ObjectType : null;

    public async Task<WebhookOutcome<WebhookRegistration>> RegisterAsync(
        JsonObject config, string url, IReadOnlyList<string> events, string? endpointWithKnownSecret, CancellationToken ct)
    {
        if (events.Count == 0) return new(null, "Could not determine valid webhook events. Please create the webhook manually.");
        var service = new WebhookEndpointService(Client(config));
        try
        {
            var ours = await EndpointsAtAsync(service, url, ct);
            var kept = ours.FirstOrDefault(e => e.Id == endpointWithKnownSecret);
            var replaced = new List<string>();
            foreach (var stale in ours.Where(e => e != kept))
            {
                await service.DeleteAsync(stale.Id, cancellationToken: ct);
                replaced.Add(stale.Id);
            }

            if (kept is not null)
            {
                if (!kept.EnabledEvents.Order(StringComparer.Ordinal).SequenceEqual(events.Order(StringComparer.Ordinal)))
                    kept = await service.UpdateAsync(kept.Id, new WebhookEndpointUpdateOptions { EnabledEvents = [.. events] }, cancellationToken: ct);
                return WebhookOutcome<WebhookRegistration>.Ok(new WebhookRegistration(kept.Id, null, true, replaced, kept.EnabledEvents));
            }

            var created = await service.CreateAsync(new WebhookEndpointCreateOptions
            {
                Url = url, EnabledEvents = [.. events], Description = EndpointDescription,
            }, cancellationToken: ct);
            return WebhookOutcome<WebhookRegistration>.Ok(new WebhookRegistration(created.Id, created.Secret, false, replaced, created.EnabledEvents));
        }
        catch (StripeException e) when (IsPermission(e))
        {
            return new(null, "Your Stripe API key doesn't have permission to create webhooks. Please add the 'Write' permission for 'Webhook endpoints' to your API key, or create the webhook manually.", true);
        }
        catch (StripeException e)
        {
            return new(null, $"Failed to create webhook automatically: {e.StripeError?.Message ?? e.Message}");
        }
        catch (HttpRequestException)
        {
            return new(null, "Failed to create webhook automatically: could not reach Stripe.");
        }
    }

    public async Task<WebhookOutcome<WebhookRemoval>> DeleteAsync(JsonObject config, string url, CancellationToken ct)
    {
        var service = new WebhookEndpointService(Client(config));
        try
        {
            var deleted = new List<string>();
            foreach (var endpoint in await EndpointsAtAsync(service, url, ct))
            {
                await service.DeleteAsync(endpoint.Id, cancellationToken: ct);
                deleted.Add(endpoint.Id);
            }

            return WebhookOutcome<WebhookRemoval>.Ok(new WebhookRemoval(deleted));
        }
        catch (StripeException e) when (IsPermission(e))
        {
            return new(null, "Your Stripe API key doesn't have permission to delete webhooks. Please delete the webhook manually from your Stripe dashboard.", true);
        }
        catch (StripeException e)
        {
            return new(null, $"Failed to delete the webhook: {e.StripeError?.Message ?? e.Message}");
        }
        catch (HttpRequestException)
        {
            return new(null, "Failed to delete the webhook: could not reach Stripe.");
        }
    }

    public async Task<WebhookOutcome<WebhookEndpointState>> ReadAsync(JsonObject config, string url, CancellationToken ct)
    {
        try
        {
            var endpoint = (await EndpointsAtAsync(new WebhookEndpointService(Client(config)), url, ct)).FirstOrDefault();
            return WebhookOutcome<WebhookEndpointState>.Ok(endpoint is null
                ? new WebhookEndpointState(false, null, null, [], null, null, null)
                : new WebhookEndpointState(true, endpoint.Id, endpoint.Url, endpoint.EnabledEvents, endpoint.Status, endpoint.Description, endpoint.Created));
        }
        catch (StripeException e)
        {
            return new(null, e.StripeError?.Message ?? e.Message, IsPermission(e));
        }
        catch (HttpRequestException)
        {
            return new(null, "Could not reach Stripe.");
        }
    }

    public string SignatureHeader => "Stripe-Signature";

    public WebhookVerification Verify(string rawBody, string? signatureHeader, string secret, DateTimeOffset now)
    {
        if (string.IsNullOrWhiteSpace(signatureHeader)) return WebhookVerification.Refused("Missing signature");
        // The header's shape is checked first only to tell "unparsable" from "wrong" in PostHog's words; the
        // signature itself is Stripe.net's to judge.
        var parts = signatureHeader.Split(',').Select(p => p.Split('=', 2)).ToList();
        if (!parts.Any(p => p is ["t", { Length: > 0 }]) || !parts.Any(p => p is ["v1", { Length: > 0 }]))
            return WebhookVerification.Refused("Could not parse signature");
        try
        {
            EventUtility.ValidateSignature(rawBody, signatureHeader, secret, ToleranceSeconds, now.ToUnixTimeSeconds());
        }
        catch (StripeException)
        {
            return WebhookVerification.Refused("Bad signature");
        }

        try
        {
            var json = JsonNode.Parse(rawBody);
            return new WebhookVerification(true, null, json?["id"]?.GetValue<string>(), json?["type"]?.GetValue<string>(),
                json?["data"]?["object"]?["object"]?.GetValue<string>());
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return WebhookVerification.Refused("Invalid payload");
        }
    }

    private static async Task<List<WebhookEndpoint>> EndpointsAtAsync(WebhookEndpointService service, string url, CancellationToken ct)
    {
        var found = new List<WebhookEndpoint>();
        await foreach (var endpoint in service.ListAutoPagingAsync(new WebhookEndpointListOptions { Limit = 100 }, cancellationToken: ct))
            if (endpoint.Url == url) found.Add(endpoint);
        return found;
    }

    private static bool IsPermission(StripeException e) =>
        e.HttpStatusCode == HttpStatusCode.Forbidden || e.StripeError?.Message?.Contains("permission", StringComparison.OrdinalIgnoreCase) == true;
}
