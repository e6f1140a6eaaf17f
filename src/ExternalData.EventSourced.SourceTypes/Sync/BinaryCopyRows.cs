using System.Buffers.Binary;

namespace ExternalData.EventSourced.SourceTypes.Sync;

/// <summary>
/// Counts the rows of a PostgreSQL binary COPY stream as it passes, chunk by chunk, without decoding a value: the
/// 19-byte header and its extension, then per row a 16-bit field count (−1 ends the stream) and per field a 32-bit length
/// (−1 for NULL) followed by that many bytes. A run pipes pages through untouched and still knows how many rows each held.
/// </summary>
public sealed class BinaryCopyRows
{
    private const int SignatureAndFlags = 15; // "PGCOPY\n\xff\r\n\0" and the 32-bit flags

    private enum Expect { Header, Extension, FieldCount, FieldLength, FieldData, Done }

    private Expect _expect = Expect.Header;
    private readonly byte[] _pending = new byte[SignatureAndFlags + 4];
    private int _have;
    private long _skip;
    private int _fieldsLeft;

    public long Rows { get; private set; }

    public void Feed(ReadOnlySpan<byte> chunk)
    {
        while (!chunk.IsEmpty && _expect != Expect.Done)
        {
            if (_expect is Expect.Extension or Expect.FieldData)
            {
                var skipped = (int)Math.Min(_skip, chunk.Length);
                chunk = chunk[skipped..];
                _skip -= skipped;
                if (_skip == 0) AfterSkip();
                continue;
            }

            var need = _expect switch { Expect.Header => SignatureAndFlags + 4, Expect.FieldCount => 2, _ => 4 };
            var take = Math.Min(need - _have, chunk.Length);
            chunk[..take].CopyTo(_pending.AsSpan(_have));
            _have += take;
            chunk = chunk[take..];
            if (_have < need) return;
            _have = 0;
            Read(_pending.AsSpan(0, need));
        }
    }

    private void Read(ReadOnlySpan<byte> value)
    {
        switch (_expect)
        {
            case Expect.Header:
                _skip = BinaryPrimitives.ReadInt32BigEndian(value[SignatureAndFlags..]);
                _expect = Expect.Extension;
                if (_skip == 0) AfterSkip();
                break;
            case Expect.FieldCount:
                _fieldsLeft = BinaryPrimitives.ReadInt16BigEndian(value);
                if (_fieldsLeft < 0)
                {
                    _expect = Expect.Done;
                    break;
                }

                Rows++;
                _expect = _fieldsLeft == 0 ? Expect.FieldCount : Expect.FieldLength;
                break;
            case Expect.FieldLength:
                _skip = Math.Max(0, BinaryPrimitives.ReadInt32BigEndian(value));
                _fieldsLeft--;
                _expect = Expect.FieldData;
                if (_skip == 0) AfterSkip();
                break;
        }
    }

    private void AfterSkip() =>
        _expect = _expect == Expect.Extension || _fieldsLeft == 0 ? Expect.FieldCount : Expect.FieldLength;
}
