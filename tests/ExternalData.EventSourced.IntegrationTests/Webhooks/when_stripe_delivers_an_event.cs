using System.Net;
using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Webhooks;

/// <summary>The inbound endpoint (API.md §3 row 22): Stripe's signature checked by Stripe.net over the raw body,
/// deliveries de-duplicated on the event id, routed by object type, and kept sealed before the 200.</summary>
public sealed class when_stripe_delivers_an_event(AppFixture app) : StripeWebhookContext(app)
{
    private async Task<(string Id, string Secret)> RegisteredAsync()
    {
        var id = await StripeSourceAsync();
        await CreateWebhookAsync(id);
        return (id, EndpointsOf(id).Single().Secret);
    }

    private static string NewEvent(string objectType = "customer", string type = "customer.updated", string? marker = null) =>
        FakeStripeServer.Event($"evt_{Guid.NewGuid():N}", type, objectType, marker ?? "cus_1");

    [Fact]
    public async Task a_signed_delivery_is_accepted_once_and_counted_on_its_schema()
    {
        var (id, secret) = await RegisteredAsync();
        var body = NewEvent();
        var first = (await DeliverAsync(id, body, FakeStripeServer.Sign(body, secret))).ShouldHaveStatus(HttpStatusCode.OK).Json;
        first["status"]!.GetValue<string>().ShouldBe("accepted");
        var again = (await DeliverAsync(id, body, FakeStripeServer.Sign(body, secret))).ShouldHaveStatus(HttpStatusCode.OK).Json;
        again["status"]!.GetValue<string>().ShouldBe("duplicate");
        var other = NewEvent();
        (await DeliverAsync(id, other, FakeStripeServer.Sign(other, secret))).Json["status"]!.GetValue<string>().ShouldBe("accepted");

        var customer = (await SchemasAsync(id))["Customer"];
        customer["webhook_events_received"]!.GetValue<long>().ShouldBe(2);
        customer["last_webhook_at"].ShouldNotBeNull();
        (await SchemasAsync(id))["Charge"]["webhook_events_received"]!.GetValue<long>().ShouldBe(0);
    }

    [Fact]
    public async Task the_same_event_delivered_ten_times_at_once_is_kept_once()
    {
        var (id, secret) = await RegisteredAsync();
        var body = NewEvent();
        var signature = FakeStripeServer.Sign(body, secret);
        var answers = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => DeliverAsync(id, body, signature)));
        answers.ShouldAllBe(a => a.Status == HttpStatusCode.OK);
        answers.Select(a => a.Json["status"]!.GetValue<string>()).Order().ShouldBe(["accepted", .. Enumerable.Repeat("duplicate", 9)]);
        (await SchemasAsync(id))["Customer"]["webhook_events_received"]!.GetValue<long>().ShouldBe(1);
    }

    [Fact]
    public async Task a_tampered_body_a_stale_timestamp_and_bad_headers_are_refused_in_posthogs_words()
    {
        var (id, secret) = await RegisteredAsync();
        var body = NewEvent();
        var signature = FakeStripeServer.Sign(body, secret);
        (await DeliverAsync(id, body.Replace("cus_1", "cus_2"), signature)).ShouldBeProblem(HttpStatusCode.BadRequest, "Bad signature");
        (await DeliverAsync(id, body, FakeStripeServer.Sign(body, secret, DateTimeOffset.UtcNow.AddSeconds(-400)))).ShouldBeProblem(HttpStatusCode.BadRequest, "Bad signature");
        (await DeliverAsync(id, body, FakeStripeServer.Sign(body, "whsec_someone_else"))).ShouldBeProblem(HttpStatusCode.BadRequest, "Bad signature");
        (await DeliverAsync(id, body, null)).ShouldBeProblem(HttpStatusCode.BadRequest, "Missing signature");
        (await DeliverAsync(id, body, "garbage")).ShouldBeProblem(HttpStatusCode.BadRequest, "Could not parse signature");
        ((await SchemasAsync(id))["Customer"]["webhook_events_received"]!.GetValue<long>()).ShouldBe(0);
    }

    [Fact]
    public async Task several_v1_values_are_accepted_while_a_secret_rotates()
    {
        var (id, secret) = await RegisteredAsync();
        var body = NewEvent();
        var signed = FakeStripeServer.Sign(body, secret);
        var oldSecret = FakeStripeServer.Sign(body, "whsec_previous").Split(',').Single(p => p.StartsWith("v1=", StringComparison.Ordinal));
        (await DeliverAsync(id, body, $"{signed},{oldSecret}")).ShouldHaveStatus(HttpStatusCode.OK).Json["status"]!.GetValue<string>().ShouldBe("accepted");
        var reversed = NewEvent();
        var parts = FakeStripeServer.Sign(reversed, secret).Split(',');
        (await DeliverAsync(id, reversed, $"{parts[0]},{oldSecret},{parts[1]}")).ShouldHaveStatus(HttpStatusCode.OK);
    }

    [Fact]
    public async Task an_unmapped_object_type_is_ignored_with_200()
    {
        var (id, secret) = await RegisteredAsync();
        var body = NewEvent("account", "account.updated");
        (await DeliverAsync(id, body, FakeStripeServer.Sign(body, secret))).ShouldHaveStatus(HttpStatusCode.OK).Json["status"]!.GetValue<string>().ShouldBe("ignored");
    }

    [Fact]
    public async Task unknown_deleted_and_webhook_less_sources_are_404_and_get_is_405()
    {
        var (id, secret) = await RegisteredAsync();
        var body = NewEvent();
        (await DeliverAsync(Guid.NewGuid().ToString(), body, FakeStripeServer.Sign(body, secret))).Status.ShouldBe(HttpStatusCode.NotFound);
        (await DeliverAsync("not-a-uuid", body, FakeStripeServer.Sign(body, secret))).Status.ShouldBe(HttpStatusCode.NotFound);
        var polling = await StripeSourceAsync(prefix: "polling");
        (await DeliverAsync(polling, body, FakeStripeServer.Sign(body, secret))).Status.ShouldBe(HttpStatusCode.NotFound);
        (await App.Anonymous().GetAsync(InboundPath(id))).Status.ShouldBe(HttpStatusCode.MethodNotAllowed);

        (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);
        (await DeliverAsync(id, body, FakeStripeServer.Sign(body, secret))).Status.ShouldBe(HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task delivered_payloads_and_the_signing_secret_are_never_stored_readable_and_die_with_the_source()
    {
        var (id, secret) = await RegisteredAsync();
        var canary = $"cus_canary_{Guid.NewGuid():N}";
        var body = NewEvent(marker: canary);
        (await DeliverAsync(id, body, FakeStripeServer.Sign(body, secret))).ShouldHaveStatus(HttpStatusCode.OK);
        await AssertNowhereStoredAsync(canary);
        await AssertNowhereStoredAsync(secret);
        App.Logs.Lines.ShouldNotContain(l => l.Contains(secret) || l.Contains(canary));

        (await Api.DeleteAsync(SourceUrl(id))).ShouldHaveStatus(HttpStatusCode.NoContent);
        for (var i = 0; i < 300 && !(await EventTypesAsync(id)).Contains("source_secrets_shredded"); i++) await Task.Delay(100);
        (await EventTypesAsync(id)).ShouldContain("source_secrets_shredded");
        await AssertNowhereStoredAsync(canary);
        await AssertNowhereStoredAsync(secret);
    }
}
