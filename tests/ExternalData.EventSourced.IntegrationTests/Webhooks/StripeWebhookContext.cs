using System.Net;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Webhooks;

/// <summary>A Stripe source on the suite's Stripe-protocol server, with Customer and Charge polled.</summary>
public abstract class StripeWebhookContext(AppFixture app) : IntegrationContext(app)
{
    protected async Task<string> StripeSourceAsync(string key = FakeStripeServer.FullKey, string? prefix = null)
    {
        var body = new JsonObject
        {
            ["source_type"] = "Stripe",
            ["prefix"] = prefix,
            ["payload"] = new JsonObject
            {
                ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["stripe_secret_key"] = key },
                ["schemas"] = new JsonArray(
                    new JsonObject { ["name"] = "Customer", ["should_sync"] = true, ["sync_type"] = "full_refresh" },
                    new JsonObject { ["name"] = "Charge", ["should_sync"] = true, ["sync_type"] = "full_refresh" }),
            },
        };
        return (await Api.PostAsync(Sources, body)).ShouldHaveStatus(HttpStatusCode.Created).Json["id"]!.GetValue<string>();
    }

    protected string InboundPath(string id) => $"/public/webhooks/dwh/{id}";

    protected IReadOnlyList<FakeStripeServer.WebhookEndpointRecord> EndpointsOf(string id) =>
        App.Stripe.Endpoints.Where(e => e.Url.EndsWith(InboundPath(id), StringComparison.Ordinal)).ToList();

    protected async Task<JsonNode> CreateWebhookAsync(string id) =>
        (await Api.PostAsync($"{SourceUrl(id)}create_webhook/", new JsonObject())).ShouldHaveStatus(HttpStatusCode.OK).Json;

    protected async Task<Dictionary<string, JsonNode>> SchemasAsync(string id) =>
        (await Api.GetAsync(SourceUrl(id))).Json["schemas"]!.AsArray().ToDictionary(s => s!["name"]!.GetValue<string>(), s => s!);

    /// <summary>A delivery as Stripe makes it: a real HTTP POST with the raw body and its Stripe-Signature.</summary>
    protected async Task<ApiResponse> DeliverAsync(string id, string body, string? signature)
    {
        var headers = new Dictionary<string, string>();
        if (signature is not null) headers["Stripe-Signature"] = signature;
        return await App.Anonymous().SendAsync(HttpMethod.Post, InboundPath(id), body, headers);
    }
}
