using ExternalData.EventSourced.Infrastructure.Encryption;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Infrastructure;

public sealed class when_resolving_the_master_key : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"mk-{Guid.NewGuid():N}");

    private sealed class Environment(string name) : IHostEnvironment
    {
        public string EnvironmentName { get; set; } = name;
        public string ApplicationName { get; set; } = "test";
        public string ContentRootPath { get; set; } = "/";
        public IFileProvider ContentRootFileProvider { get; set; } = new NullFileProvider();
    }

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.ToDictionary(v => v.Key, v => (string?)v.Value)).Build();

    [Fact]
    public void production_refuses_to_start_without_one()
    {
        Should.Throw<InvalidOperationException>(() => MasterKeySetup.Resolve(Config(), new Environment("Production"), _folder))
            .Message.ShouldContain("No master key configured");
        Directory.Exists(_folder).ShouldBeFalse();
    }

    [Fact]
    public void development_generates_one_into_the_local_folder_once()
    {
        var first = MasterKeySetup.Resolve(Config(), new Environment("Development"), _folder);
        var second = MasterKeySetup.Resolve(Config(), new Environment("Development"), _folder);

        first.MasterKeys["dev"].ShouldBe(second.MasterKeys["dev"]);
        Convert.FromBase64String(first.MasterKeys["dev"]).Length.ShouldBe(32);
        if (!OperatingSystem.IsWindows()) File.GetUnixFileMode(Path.Combine(_folder, "master.key")).ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    [Fact]
    public void configuration_wins_in_every_environment()
    {
        var key = SecretsCipher.NewMasterKey();
        var options = MasterKeySetup.Resolve(Config(("ExternalData:Encryption:MasterKeys:k7", key), ("ExternalData:Encryption:ActiveMasterKeyId", "k7")),
            new Environment("Production"), _folder);

        options.ActiveMasterKeyId.ShouldBe("k7");
        options.MasterKeys["k7"].ShouldBe(key);
    }

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }
}
