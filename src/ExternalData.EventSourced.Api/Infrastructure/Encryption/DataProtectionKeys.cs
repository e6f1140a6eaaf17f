using System.Text.Json.Nodes;
using System.Xml.Linq;
using Marten;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Microsoft.AspNetCore.DataProtection.XmlEncryption;
using Microsoft.Extensions.Options;

namespace ExternalData.EventSourced.Infrastructure.Encryption;

/// <summary>An ASP.NET Data Protection key, kept in the service's database so every node (and every restart)
/// validates the tokens any node issued. Stored encrypted under the master key.</summary>
public sealed class DataProtectionKeyDocument
{
    public string Id { get; set; } = "";
    public string Xml { get; set; } = "";
}

/// <summary>Data Protection's key ring in Marten. Its interface is synchronous, so the calls block; they run once
/// per key-ring refresh (about a day), never per request.</summary>
public sealed class MartenXmlRepository(IDocumentStore store) : IXmlRepository
{
    public IReadOnlyCollection<XElement> GetAllElements()
    {
        using var session = store.QuerySession();
#pragma warning disable VSTHRD002 // IXmlRepository is synchronous; see the summary.
        var documents = session.Query<DataProtectionKeyDocument>().ToListAsync().GetAwaiter().GetResult();
#pragma warning restore VSTHRD002
        return documents.Select(d => XElement.Parse(d.Xml)).ToList();
    }

    public void StoreElement(XElement element, string friendlyName)
    {
        using var session = store.LightweightSession();
        session.Store(new DataProtectionKeyDocument { Id = friendlyName, Xml = element.ToString(SaveOptions.DisableFormatting) });
#pragma warning disable VSTHRD002 // IXmlRepository is synchronous; see the summary.
        session.SaveChangesAsync().GetAwaiter().GetResult();
#pragma warning restore VSTHRD002
    }
}

/// <summary>Seals each Data Protection key with a data key wrapped by the master key (the same envelope as secrets).</summary>
public sealed class MasterKeyXmlEncryptor(SecretsCipher cipher) : IXmlEncryptor
{
    public EncryptedXmlInfo Encrypt(XElement plaintextElement)
    {
        var (document, key) = cipher.NewDataKey(Guid.Empty, DateTimeOffset.UtcNow);
        var sealedKey = cipher.Seal(new JsonObject { ["xml"] = plaintextElement.ToString(SaveOptions.DisableFormatting) }, key, Guid.Empty);
        var element = new XElement("sealedKey",
            new XAttribute("masterKeyId", document.MasterKeyId), new XAttribute("wrappedKey", document.WrappedKey),
            new XAttribute("nonce", sealedKey.Nonce), new XAttribute("ciphertext", sealedKey.Ciphertext));
        return new EncryptedXmlInfo(element, typeof(MasterKeyXmlDecryptor));
    }
}

/// <summary>Created by Data Protection through its activator, which hands it the service provider.</summary>
public sealed class MasterKeyXmlDecryptor(IServiceProvider services) : IXmlDecryptor
{
    public XElement Decrypt(XElement encryptedElement)
    {
        var cipher = services.GetRequiredService<SecretsCipher>();
        var key = cipher.Unwrap(new DataKey
        {
            Id = Guid.Empty, MasterKeyId = (string)encryptedElement.Attribute("masterKeyId")!, WrappedKey = (string)encryptedElement.Attribute("wrappedKey")!,
        });
        var plain = cipher.Unseal(new SealedSecrets((string)encryptedElement.Attribute("nonce")!, (string)encryptedElement.Attribute("ciphertext")!), key, Guid.Empty);
        return XElement.Parse(plain["xml"]!.GetValue<string>());
    }
}

public static class DataProtectionSetup
{
    public const string ApplicationName = "ExternalData.EventSourced";

    public static IServiceCollection AddDatabaseDataProtection(this IServiceCollection services)
    {
        services.AddDataProtection().SetApplicationName(ApplicationName);
        services.AddSingleton<IConfigureOptions<KeyManagementOptions>>(provider => new ConfigureOptions<KeyManagementOptions>(options =>
        {
            options.XmlRepository = new MartenXmlRepository(provider.GetRequiredService<IDocumentStore>());
            options.XmlEncryptor = new MasterKeyXmlEncryptor(provider.GetRequiredService<SecretsCipher>());
        }));
        return services;
    }
}
