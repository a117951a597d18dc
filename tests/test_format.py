"""The .bbc container: every malformed file is refused with FormatError."""

from __future__ import annotations

import struct
import zlib

import pytest

from bbcodec.coding import format as fmt


def make(width: int = 17, height: int = 9, payload: bytes = b"\x01\x02\x03\x04" * 3) -> bytes:
    header = fmt.Header(width, height, 4 * 256, b"\xaa" * 8, b"\xbb" * 8)
    return fmt.pack(header, payload)


def recrc(body: bytes) -> bytes:
    """Re-seal edited header+payload bytes with a valid CRC (to reach later checks)."""
    return body + struct.pack("<I", zlib.crc32(body))


def test_pack_then_unpack_returns_the_same_fields():
    data = make()
    header, payload = fmt.unpack(data)
    assert (header.width, header.height, header.quality_value, header.model_id) == (17, 9, 4.0, 1)
    assert header.weights_sha256 == b"\xaa" * 8 and header.image_digest == b"\xbb" * 8
    assert payload == b"\x01\x02\x03\x04" * 3
    assert len(data) == fmt.HEADER_SIZE + 12 + fmt.TRAILER_SIZE


def test_header_layout_matches_the_spec_offsets():
    data = make(width=0x1234, height=0x56)
    assert data[:4] == b"\x8bBBC" and data[4] == 2 and data[5] == 3
    assert struct.unpack_from("<H", data, 6)[0] == 1024
    assert struct.unpack_from("<II", data, 8) == (0x1234, 0x56)
    assert struct.unpack_from("<I", data, 32)[0] == 12
    assert struct.unpack_from("<H", data, 36)[0] == 1
    assert struct.unpack_from("<H", data, 38)[0] == 1  # streams
    many = fmt.pack(fmt.Header(17, 40, 1024, b"\xaa" * 8, b"\xbb" * 8, streams=5), b"\0" * 16)
    assert struct.unpack_from("<H", many, 38)[0] == 5 and fmt.unpack(many)[0].streams == 5


def test_every_truncation_is_refused():
    data = make()
    for n in range(len(data)):
        with pytest.raises(fmt.FormatError):
            fmt.unpack(data[:n])


def test_every_single_bit_flip_is_refused():
    data = make()
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(fmt.FormatError):
            fmt.unpack(bytes(bad))


def test_trailing_bytes_are_refused():
    with pytest.raises(fmt.FormatError, match="unexpected bytes"):
        fmt.unpack(make() + b"\x00")


@pytest.mark.parametrize(
    ("offset", "fmt_char", "value", "message"),
    [
        (4, "B", 0, "version"),
        (4, "B", 8, "version"),
        (38, "H", 0, "stream count 0"),
        (38, "H", 65, "stream count 65"),
        (5, "B", 4, "channel"),
        (6, "H", 0, "quality"),
        (6, "H", 2049, "quality"),
        (8, "I", 0, "size"),
        (8, "I", 70000, "size"),
        (12, "I", 65535, "exceeds"),
    ],
)
def test_invalid_header_fields_are_refused_even_with_a_valid_crc(offset, fmt_char, value, message):
    body = bytearray(make(width=65535)[:-4])
    struct.pack_into("<" + fmt_char, body, offset, value)
    with pytest.raises(fmt.FormatError, match=message):
        fmt.unpack(recrc(bytes(body)))


def test_payload_length_mismatch_is_refused():
    body = bytearray(make()[:-4])
    struct.pack_into("<I", body, 32, 8)
    with pytest.raises(fmt.FormatError):
        fmt.unpack(recrc(bytes(body)))


def test_a_payload_length_of_2_gib_is_refused_by_the_limit_before_anything_else():
    """44 bytes claiming a 2^31-byte payload: refused for the limit, not as truncated
    (the CRC cannot be re-sealed for 2 GiB, so the check must come first)."""
    head = fmt.HEADER.pack(fmt.MAGIC, fmt.VERSION, 3, 4 * 256, 17, 9, b"\xaa" * 8, b"\xbb" * 8, fmt.MAX_PAYLOAD, 1, 1)
    data = head + b"\x00" * fmt.TRAILER_SIZE
    assert len(data) == 44 and fmt.MAX_PAYLOAD == 2**31
    with pytest.raises(fmt.FormatError, match="limit"):
        fmt.unpack(data)
    body = bytearray(make()[:-4])
    struct.pack_into("<I", body, 32, 2**32 - 4)  # the largest u32 multiple of 4
    with pytest.raises(fmt.FormatError, match="limit"):
        fmt.unpack(recrc(bytes(body)))


def test_wrong_magic_says_not_a_bbc_file():
    with pytest.raises(fmt.FormatError, match="not a .bbc file"):
        fmt.unpack(b"\x89PNG\r\n\x1a\n" + b"\x00" * 60)


def test_an_empty_payload_is_refused_in_version_1_only():
    """Version 1 codes every symbol (at least one word); a version 2 payload holds the
    table of stream lengths and the symbols of scale index above 0 (possibly none)."""
    body = bytearray(make()[:-4])[:40]
    struct.pack_into("<I", body, 32, 0)
    assert fmt.unpack(recrc(bytes(body)))[1] == b""
    body[4], body[38] = 1, 0
    with pytest.raises(fmt.FormatError, match="empty payload"):
        fmt.unpack(recrc(bytes(body)))
    with pytest.raises(fmt.FormatError, match="empty payload"):
        fmt.pack(fmt.Header(17, 9, 1024, b"\xaa" * 8, b"\xbb" * 8, version=1), b"")
    assert fmt.unpack(make(payload=b""))[1] == b""


def test_version_1_files_have_one_stream_and_a_zero_reserved_field():
    v1 = fmt.pack(fmt.Header(17, 9, 1024, b"\xaa" * 8, b"\xbb" * 8, version=1), b"\0" * 4)
    assert v1[4] == 1 and struct.unpack_from("<H", v1, 38)[0] == 0
    header = fmt.unpack(v1)[0]
    assert header.version == 1 and header.streams == 1 and not header.skips_zero_scale
    body = bytearray(v1[:-4])
    struct.pack_into("<H", body, 38, 2)
    with pytest.raises(fmt.FormatError, match="reserved"):
        fmt.unpack(recrc(bytes(body)))
    with pytest.raises(fmt.FormatError, match="version 1 with 2 streams"):
        fmt.pack(fmt.Header(17, 9, 1024, b"\xaa" * 8, b"\xbb" * 8, version=1, streams=2), b"\0" * 4)


def test_a_payload_shorter_than_its_stream_table_is_refused():
    with pytest.raises(fmt.FormatError, match="table of 4 stream lengths"):
        fmt.pack(fmt.Header(17, 40, 1024, b"\xaa" * 8, b"\xbb" * 8, streams=5), b"\0" * 12)


def test_a_stream_is_read_no_further_than_the_header_says():
    import io

    data = make()

    class Endless(io.RawIOBase):
        """data, then zeros for ever; counts what was read."""

        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # noqa: ANN001
            n = len(b)
            chunk = (data[self.pos:] + b"\0" * n)[:n]
            b[:n] = chunk
            self.pos += n
            return n

    s = Endless()
    with pytest.raises(fmt.FormatError, match="unexpected bytes after the end"):
        fmt.read_from(s)
    assert s.pos == len(data) + 1
    assert fmt.read_from(io.BytesIO(data)) == data
    for junk in (b"\0" * 10**6, b"GIF89a" + b"\0" * 100, b""):
        with pytest.raises(fmt.FormatError, match="not a .bbc file"):
            fmt.read_from(io.BytesIO(junk))
    with pytest.raises(fmt.FormatError, match="truncated"):
        fmt.unpack(fmt.read_from(io.BytesIO(data[:-1])))
