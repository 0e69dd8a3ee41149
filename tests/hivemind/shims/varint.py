"""Shim for PyPI `varint` (unsigned LEB128), the three calls hivemind's multiaddr uses."""


def encode(number):
    if number < 0:
        raise ValueError("varint: negative")
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_stream(stream):
    shift = 0
    result = 0
    for _ in range(10):
        b = stream.read(1)
        if not b:
            raise EOFError("varint: unexpected end")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
    raise ValueError("varint: too long")


def decode_bytes(buf):
    import io

    return decode_stream(io.BytesIO(buf))
