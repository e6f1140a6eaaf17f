namespace ExternalData.EventSourced.Infrastructure.Encryption;

/// <summary>
/// Where the master key comes from: configuration always; in Development a key generated once into the local
/// data folder; in any other environment the service refuses to start without one (API.md §1.5).
/// </summary>
public static class MasterKeySetup
{
    public static EncryptionOptions Resolve(IConfiguration configuration, IHostEnvironment environment, string localDataFolder)
    {
        var options = configuration.GetSection(EncryptionOptions.Section).Get<EncryptionOptions>() ?? new EncryptionOptions();
        if (options.MasterKeys.Count > 0) return options;

        if (!environment.IsDevelopment())
        {
            throw new InvalidOperationException(
                $"No master key configured. Set {EncryptionOptions.Section}:MasterKeys:<id> to 32 random bytes in base64 " +
                $"(and {EncryptionOptions.Section}:ActiveMasterKeyId), e.g. via ExternalData__Encryption__MasterKeys__k1.");
        }

        Directory.CreateDirectory(localDataFolder);
        var file = Path.Combine(localDataFolder, "master.key");
        if (!File.Exists(file))
        {
            File.WriteAllText(file, SecretsCipher.NewMasterKey());
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        return new EncryptionOptions { MasterKeys = { ["dev"] = File.ReadAllText(file).Trim() }, ActiveMasterKeyId = "dev" };
    }
}
