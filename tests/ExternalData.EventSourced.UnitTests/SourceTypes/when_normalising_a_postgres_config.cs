using System.Text.Json.Nodes;
using ExternalData.EventSourced.SourceTypes.Configuration;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

public sealed class when_normalising_a_postgres_config
{
    private static readonly ConfigSchema Schema = Given.Postgres.Definition.Config;

    private static JsonObject Valid() => new()
    {
        ["host"] = "  db.example.com ", ["port"] = "5432", ["database"] = "app", ["user"] = "reader", ["password"] = "pw", ["schema"] = "public",
        ["unknown_key"] = "dropped",
    };

    [Fact]
    public void trims_converts_the_port_and_drops_unknown_keys()
    {
        var (config, errors) = Schema.Normalise(Valid());

        errors.ShouldBeEmpty();
        config["host"]!.GetValue<string>().ShouldBe("db.example.com");
        config["port"]!.GetValue<long>().ShouldBe(5432);
        config.ContainsKey("unknown_key").ShouldBeFalse();
    }

    [Fact]
    public void names_every_missing_required_field_in_posthogs_words()
    {
        var (_, errors) = Schema.Normalise(new JsonObject { ["port"] = 5432 });

        errors.Select(e => e.Message).ShouldBe([
            "Required field 'host' is missing", "Required field 'database' is missing", "Required field 'user' is missing",
            "Required field 'password' is missing",
        ]);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("54.32")]
    public void refuses_a_port_that_is_not_a_whole_number(string port)
    {
        var input = Valid();
        input["port"] = port;
        Schema.Normalise(input).Errors.ShouldHaveSingleItem().ShouldBe(new ConfigError("port", "Field 'port' has an invalid value"));
    }

    [Fact]
    public void splits_the_secrets_from_what_may_be_shown()
    {
        var input = Valid();
        input["connection_string"] = "postgresql://u:pw@h/db";
        var (config, _) = Schema.Normalise(input);

        var (pub, secrets) = Schema.Split(config);

        pub.Select(kv => kv.Key).Order().ShouldBe(["database", "host", "port", "schema", "user"]);
        secrets.Select(kv => kv.Key).Order().ShouldBe(["connection_string", "password"]);
        Schema.SecretPaths().Order().ShouldBe(["connection_string", "password"]);
    }

    [Fact]
    public void merge_keeps_a_secret_left_out_or_empty_and_replaces_the_rest()
    {
        var stored = new JsonObject { ["host"] = "a", ["password"] = "stored", ["schema"] = "public" };

        var merged = Schema.Merge(stored, new JsonObject { ["password"] = "", ["schema"] = "sales" });

        merged["password"]!.GetValue<string>().ShouldBe("stored");
        merged["schema"]!.GetValue<string>().ShouldBe("sales");
        merged["host"]!.GetValue<string>().ShouldBe("a");
        Schema.Merge(stored, new JsonObject { ["password"] = "new" })["password"]!.GetValue<string>().ShouldBe("new");
    }

    [Theory]
    [InlineData("********", true)]
    [InlineData("•••", true)]
    [InlineData("**", false)]
    [InlineData("pa**word", false)]
    public void recognises_a_masked_placeholder(string value, bool masked)
    {
        Schema.MaskedPlaceholders(new JsonObject { ["password"] = value }).Count.ShouldBe(masked ? 1 : 0);
    }

    [Fact]
    public void fills_missing_fields_from_a_connection_string_but_explicit_fields_win()
    {
        var input = new JsonObject { ["connection_string"] = "postgresql://bob:s%40cret@db.example.com:6543/sales", ["database"] = "explicit" };

        var prepared = Given.Postgres.Prepare(input);

        prepared["host"]!.GetValue<string>().ShouldBe("db.example.com");
        prepared["port"]!.GetValue<string>().ShouldBe("6543");
        prepared["user"]!.GetValue<string>().ShouldBe("bob");
        prepared["password"]!.GetValue<string>().ShouldBe("s@cret");
        prepared["database"]!.GetValue<string>().ShouldBe("explicit");
    }

    [Fact]
    public void an_ssh_tunnel_keeps_only_its_switch()
    {
        var input = Valid();
        input["ssh_tunnel"] = new JsonObject { ["enabled"] = false, ["host"] = "bastion", ["auth"] = new JsonObject { ["password"] = "tunnel-secret" } };

        var (config, _) = Schema.Normalise(input);

        config["ssh_tunnel"]!.ToJsonString().ShouldBe("{\"enabled\":false}");
    }
}
