using System.Buffers.Binary;
using ExternalData.EventSourced.SourceTypes.Sync;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.SourceTypes;

/// <summary>Rows counted off a binary COPY stream as it passes, however it is cut into chunks.</summary>
public sealed class when_counting_copied_rows
{
    /// <summary>A binary COPY stream: header (with an extension area), rows of (bigint, text or NULL, empty bytea), trailer.</summary>
    private static byte[] Stream(int rows, int extension = 0)
    {
        var bytes = new List<byte>();
        void Int16(short v) { var b = new byte[2]; BinaryPrimitives.WriteInt16BigEndian(b, v); bytes.AddRange(b); }
        void Int32(int v) { var b = new byte[4]; BinaryPrimitives.WriteInt32BigEndian(b, v); bytes.AddRange(b); }
        bytes.AddRange([(byte)'P', (byte)'G', (byte)'C', (byte)'O', (byte)'P', (byte)'Y', (byte)'\n', 0xff, (byte)'\r', (byte)'\n', 0]);
        Int32(0);
        Int32(extension);
        bytes.AddRange(new byte[extension]);
        for (var n = 0; n < rows; n++)
        {
            Int16(3);
            Int32(8);
            bytes.AddRange(new byte[8]);
            if (n % 3 == 0) Int32(-1);
            else
            {
                var text = System.Text.Encoding.UTF8.GetBytes($"row {n} ☃");
                Int32(text.Length);
                bytes.AddRange(text);
            }

            Int32(0);
        }

        Int16(-1);
        return [.. bytes];
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(1000, 1)]
    [InlineData(1000, 3)]
    [InlineData(1000, 7)]
    [InlineData(1000, 81_920)]
    [InlineData(5, 2)]
    public void every_row_is_counted_whatever_the_chunking(int rows, int chunk)
    {
        foreach (var extension in new[] { 0, 5 })
        {
            var stream = Stream(rows, extension);
            var counter = new BinaryCopyRows();
            for (var at = 0; at < stream.Length; at += chunk) counter.Feed(stream.AsSpan(at, Math.Min(chunk, stream.Length - at)));
            counter.Rows.ShouldBe(rows);
        }
    }
}
