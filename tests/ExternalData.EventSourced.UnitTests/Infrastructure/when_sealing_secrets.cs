using System.Security.Cryptography;
using System.Text.Json.Nodes;
using ExternalData.EventSourced.Infrastructure.Encryption;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Infrastructure;

public sealed class when_sealing_secrets
{
    private static readonly string OldMaster = SecretsCipher.NewMasterKey();
    private static readonly string NewMaster = SecretsCipher.NewMasterKey();

    private static SecretsCipher Cipher(string active, params (string Id, string Key)[] keys) =>
        new(new EncryptionOptions { ActiveMasterKeyId = active, MasterKeys = keys.ToDictionary(k => k.Id, k => k.Key) });

    [Fact]
    public void round_trips_and_never_holds_the_plaintext()
    {
        var cipher = Cipher("k1", ("k1", OldMaster));
        var owner = Guid.NewGuid();
        var (document, key) = cipher.NewDataKey(owner, Given.Now);

        var sealedSecrets = cipher.Seal(new JsonObject { ["password"] = "hunter2" }, key, owner);

        sealedSecrets.Ciphertext.ShouldNotContain("hunter2");
        document.WrappedKey.ShouldNotContain(Convert.ToBase64String(key));
        cipher.Unseal(sealedSecrets, cipher.Unwrap(document), owner)["password"]!.GetValue<string>().ShouldBe("hunter2");
    }

    [Fact]
    public void a_blob_copied_onto_another_owner_does_not_open()
    {
        var cipher = Cipher("k1", ("k1", OldMaster));
        var owner = Guid.NewGuid();
        var (_, key) = cipher.NewDataKey(owner, Given.Now);
        var sealedSecrets = cipher.Seal(new JsonObject { ["password"] = "x" }, key, owner);

        Should.Throw<AuthenticationTagMismatchException>(() => cipher.Unseal(sealedSecrets, key, Guid.NewGuid()));
    }

    [Fact]
    public void after_rotation_old_data_keys_still_unwrap_and_new_ones_use_the_new_master()
    {
        var before = Cipher("k1", ("k1", OldMaster));
        var owner = Guid.NewGuid();
        var (oldDocument, oldKey) = before.NewDataKey(owner, Given.Now);

        var after = Cipher("k2", ("k1", OldMaster), ("k2", NewMaster));

        after.Unwrap(oldDocument).ShouldBe(oldKey);
        after.NewDataKey(Guid.NewGuid(), Given.Now).Document.MasterKeyId.ShouldBe("k2");
        Should.Throw<InvalidOperationException>(() => Cipher("k2", ("k2", NewMaster)).Unwrap(oldDocument)).Message.ShouldContain("'k1' is not configured");
    }

    [Fact]
    public void refuses_a_master_key_of_the_wrong_size() =>
        Should.Throw<InvalidOperationException>(() => Cipher("k1", ("k1", Convert.ToBase64String(new byte[16]))));
}
