using ExternalData.EventSourced.SourceTypes.Discovery;

namespace ExternalData.EventSourced.SourceTypes.Stripe;

/// <summary>
/// One Stripe resource we can sync (ref §6.5, §12.5): where it is listed, the cursor an append sync follows, and
/// whether Stripe sends webhooks for it. <see cref="ListPath"/> is null where Stripe has no account-wide list
/// (the resource hangs off a customer or subscription), so no permission probe is possible without a parent id.
/// </summary>
public sealed record StripeTable(string Name, string? ListPath, string? Cursor, bool Webhooks, string PermissionHint, bool WebhookOnly = false)
{
    public bool SupportsAppend => Cursor is not null && !WebhookOnly;

    public IncrementalField? CursorField => Cursor is null
        ? null
        : new IncrementalField(Cursor == "created" ? "created_at" : Cursor, "datetime", Cursor, "integer");

    public IReadOnlyList<string> SyncMethods => WebhookOnly
        ? ["Webhook only"]
        : [.. Webhooks ? new[] { "Webhook" } : [], .. SupportsAppend ? new[] { "Append only" } : [], "Full refresh"];
}

public static class StripeTables
{
    public static readonly IReadOnlyList<StripeTable> All =
    [
        new("BalanceTransaction", "/v1/balance_transactions", "created", true, "Balance transaction sources"),
        new("Charge", "/v1/charges", "created", true, "Charges"),
        new("Customer", "/v1/customers", "created", true, "Customers"),
        new("Dispute", "/v1/disputes", "created", true, "Disputes"),
        new("InvoiceItem", "/v1/invoiceitems", "date", true, "Invoices"),
        new("Invoice", "/v1/invoices", "created", true, "Invoices"),
        new("Payout", "/v1/payouts", "created", true, "Payouts"),
        new("Price", "/v1/prices", "created", true, "Prices"),
        new("Product", "/v1/products", "created", true, "Products"),
        new("Refund", "/v1/refunds", "created", true, "Refunds"),
        new("Subscription", "/v1/subscriptions", "created", true, "Subscriptions"),
        new("CreditNote", "/v1/credit_notes", "created", true, "Credit notes"),
        new("CustomerBalanceTransaction", null, "created", false, "Customers"),
        new("CustomerPaymentMethod", null, "created", true, "Payment methods"),
        new("Coupon", "/v1/coupons", "created", true, "Coupons"),
        new("Discount", null, "start", true, "Coupons", WebhookOnly: true),
        new("PaymentIntent", "/v1/payment_intents", "created", true, "Payment intents"),
        new("CheckoutSession", "/v1/checkout/sessions", "created", true, "Checkout sessions"),
        new("SubscriptionItem", null, "created", false, "Subscriptions"),
        new("SubscriptionSchedule", "/v1/subscription_schedules", "created", true, "Subscription schedules"),
        new("PromotionCode", "/v1/promotion_codes", "created", true, "Promotion codes"),
        new("Plan", "/v1/plans", "created", true, "Plans"),
        new("TaxRate", "/v1/tax_rates", "created", true, "Tax rates"),
        new("TaxId", "/v1/tax_ids", "created", true, "Tax IDs"),
        new("Quote", "/v1/quotes", "created", true, "Quotes"),
        new("Event", "/v1/events", "created", false, "Events"),
        new("BillingMeter", "/v1/billing/meters", "created", true, "Meters"),
        new("BillingCreditGrant", "/v1/billing/credit_grants", "created", true, "Credit grants"),
        new("BillingCreditBalanceTransaction", null, "created", true, "Credit grants"),
        new("BillingCreditBalanceSummary", null, null, false, "Credit grants"),
        new("EntitlementsFeature", "/v1/entitlements/features", null, false, "Entitlements"),
        new("EntitlementsActiveEntitlement", null, null, false, "Entitlements"),
        new("InvoicePayment", "/v1/invoice_payments", "created", true, "Invoices"),
        new("SetupIntent", "/v1/setup_intents", "created", true, "Setup intents"),
        new("SetupAttempt", null, "created", false, "Setup intents"),
        new("PaymentLink", "/v1/payment_links", null, true, "Payment links"),
        new("Transfer", "/v1/transfers", "created", true, "Transfers"),
        new("ApplicationFee", "/v1/application_fees", "created", true, "Application fees"),
        new("Topup", "/v1/topups", "created", true, "Top-ups"),
        new("Review", "/v1/reviews", "created", true, "Reviews"),
        new("EarlyFraudWarning", "/v1/radar/early_fraud_warnings", "created", true, "Radar"),
        new("ShippingRate", "/v1/shipping_rates", "created", false, "Shipping rates"),
    ];

    public static CatalogTable ToCatalog(StripeTable t) => new(
        t.Name, t.Name, $"Stripe {t.Name} objects.", t.SyncMethods, t.CursorField is { } f ? [f] : [], ["id"]);
}
