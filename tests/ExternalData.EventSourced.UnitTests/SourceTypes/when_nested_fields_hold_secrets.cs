using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

/// <summary>Selects and switch groups (Stripe's auth_method, for one) keep secrets inside nested blocks.</summary>
public sealed class when_nested_fields_hold_secrets
{
    private static readonly ConfigSchema Schema = new(
    [
        new SelectField("auth_method", "Auth", true, "api_key",
        [
            new SelectOption("API key", "api_key", [new InputField("api_key", "Key", "password", true)]),
            new SelectOption("OAuth", "oauth", [new InputField("integration_id", "Integration", "text", true)]),
        ]),
        new SwitchGroupField("advanced", "Advanced", false, [new InputField("token", "Token", "text", true, Secret: true)]),
    ]);

    [Fact]
    public void validates_the_chosen_option_and_splits_its_secret()
    {
        var (config, errors) = Schema.Normalise(new JsonObject
        {
            ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["api_key"] = "rk_live_1" },
            ["advanced"] = new JsonObject { ["enabled"] = true, ["token"] = "t" },
        });

        errors.ShouldBeEmpty();
        var (pub, secrets) = Schema.Split(config);
        pub.ToJsonString().ShouldBe("{\"auth_method\":{\"selection\":\"api_key\"},\"advanced\":{\"enabled\":true}}");
        secrets.ToJsonString().ShouldBe("{\"auth_method\":{\"api_key\":\"rk_live_1\"},\"advanced\":{\"token\":\"t\"}}");
        Schema.SecretPaths().ShouldBe(["auth_method.api_key", "advanced.token"]);
    }

    [Fact]
    public void an_unknown_selection_is_an_invalid_value()
    {
        Schema.Normalise(new JsonObject { ["auth_method"] = new JsonObject { ["selection"] = "magic" } }).Errors
            .ShouldHaveSingleItem().Message.ShouldBe("Field 'auth_method' has an invalid value");
    }

    [Fact]
    public void same_selection_deep_merges_and_keeps_the_secret_a_new_selection_replaces_the_block()
    {
        var stored = new JsonObject { ["auth_method"] = new JsonObject { ["selection"] = "api_key", ["api_key"] = "rk_live_1" } };

        Schema.Merge(stored, new JsonObject { ["auth_method"] = new JsonObject { ["selection"] = "api_key" } })
            .ToJsonString().ShouldBe("{\"auth_method\":{\"selection\":\"api_key\",\"api_key\":\"rk_live_1\"}}");
        Schema.Merge(stored, new JsonObject { ["auth_method"] = new JsonObject { ["selection"] = "oauth", ["integration_id"] = "9" } })
            .ToJsonString().ShouldBe("{\"auth_method\":{\"selection\":\"oauth\",\"integration_id\":\"9\"}}");
    }
}
