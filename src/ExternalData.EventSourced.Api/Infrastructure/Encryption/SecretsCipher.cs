using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace ExternalData.EventSourced.Infrastructure.Encryption;

public sealed class EncryptionOptions
{
    public const string Section = "ExternalData:Encryption";

    /// <summary>Master keys by id, each 32 random bytes in base64. Old ids stay to unwrap older data keys.</summary>
    public Dictionary<string, string> MasterKeys { get; set; } = new();

    /// <summary>The id of the key that wraps new data keys.</summary>
    public string ActiveMasterKeyId { get; set; } = "";
}

/// <summary>
/// A data key of one owner (a source, or a stashed credential), wrapped by a master key. It lives in its own
/// document, never in an event: deleting the document shreds every secret sealed with it, in every event and
/// snapshot, for good (API.md §1.5).
/// </summary>
public sealed class DataKey
{
    public Guid Id { get; set; }
    public string MasterKeyId { get; set; } = "";
    public string WrappedKey { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>Secrets as they are stored: AES-256-GCM ciphertext (with tag) and nonce, base64. Bound to the owner id.</summary>
public sealed record SealedSecrets(string Nonce, string Ciphertext);

/// <summary>Envelope encryption with the BCL's AES-GCM: per-owner data keys, wrapped by a rotatable master key.</summary>
public sealed class SecretsCipher
{
    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private readonly Dictionary<string, byte[]> _masterKeys;
    private readonly string _activeId;

    public SecretsCipher(EncryptionOptions options)
    {
        _masterKeys = options.MasterKeys.ToDictionary(kv => kv.Key, kv => DecodeKey(kv.Key, kv.Value));
        _activeId = options.ActiveMasterKeyId is { Length: > 0 } id ? id : _masterKeys.Keys.FirstOrDefault() ?? "";
        if (!_masterKeys.ContainsKey(_activeId))
            throw new InvalidOperationException($"No master key is configured under {EncryptionOptions.Section} (active id '{_activeId}').");
    }

    public (DataKey Document, byte[] Key) NewDataKey(Guid ownerId, DateTimeOffset now)
    {
        var key = RandomNumberGenerator.GetBytes(KeySize);
        var wrapped = Encrypt(_masterKeys[_activeId], key, Aad("datakey", ownerId, _activeId));
        return (new DataKey { Id = ownerId, MasterKeyId = _activeId, WrappedKey = Convert.ToBase64String(wrapped), CreatedAt = now }, key);
    }

    public byte[] Unwrap(DataKey document)
    {
        if (!_masterKeys.TryGetValue(document.MasterKeyId, out var master))
            throw new InvalidOperationException($"Master key '{document.MasterKeyId}' is not configured; it is needed to read data key {document.Id}.");
        return Decrypt(master, Convert.FromBase64String(document.WrappedKey), Aad("datakey", document.Id, document.MasterKeyId));
    }

    public SealedSecrets Seal(JsonObject secrets, byte[] dataKey, Guid ownerId)
    {
        var blob = Encrypt(dataKey, Encoding.UTF8.GetBytes(secrets.ToJsonString()), Aad("secrets", ownerId, ""));
        return new SealedSecrets(Convert.ToBase64String(blob[..NonceSize]), Convert.ToBase64String(blob[NonceSize..]));
    }

    public JsonObject Unseal(SealedSecrets sealedSecrets, byte[] dataKey, Guid ownerId)
    {
        var blob = Convert.FromBase64String(sealedSecrets.Nonce).Concat(Convert.FromBase64String(sealedSecrets.Ciphertext)).ToArray();
        var plain = Decrypt(dataKey, blob, Aad("secrets", ownerId, ""));
        return JsonNode.Parse(plain)?.AsObject() ?? new JsonObject();
    }

    // The associated data binds a ciphertext to its owner, so a blob copied onto another source will not open.
    private static byte[] Aad(string purpose, Guid ownerId, string keyId) => Encoding.UTF8.GetBytes($"{purpose}:{ownerId:N}:{keyId}");

    private static byte[] Encrypt(byte[] key, byte[] plaintext, byte[] aad)
    {
        var output = new byte[NonceSize + plaintext.Length + TagSize];
        var nonce = output.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, plaintext, output.AsSpan(NonceSize, plaintext.Length), output.AsSpan(NonceSize + plaintext.Length), aad);
        return output;
    }

    private static byte[] Decrypt(byte[] key, byte[] blob, byte[] aad)
    {
        var cipherLength = blob.Length - NonceSize - TagSize;
        var plaintext = new byte[cipherLength];
        using var aes = new AesGcm(key, TagSize);
        aes.Decrypt(blob.AsSpan(0, NonceSize), blob.AsSpan(NonceSize, cipherLength), blob.AsSpan(NonceSize + cipherLength), plaintext, aad);
        return plaintext;
    }

    private static byte[] DecodeKey(string id, string base64)
    {
        var bytes = Convert.FromBase64String(base64);
        return bytes.Length == KeySize ? bytes : throw new InvalidOperationException($"Master key '{id}' must be {KeySize} bytes of base64.");
    }

    public static string NewMasterKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(KeySize));
}
