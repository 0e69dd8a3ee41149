"""Shim for PyPI `py-cid`: make_cid/from_bytes/from_string for CIDv1 as hivemind's multiaddr
`p2p` codec uses them (binary CIDv1 = varint version, varint codec, multihash)."""
import base64
import io

import base58
import varint

_CODECS = {"libp2p-key": 0x72, "raw": 0x55, "dag-pb": 0x70}
_NAMES = {v: k for k, v in _CODECS.items()}


class CIDv1:
    version = 1

    def __init__(self, codec, multihash):
        self.codec = codec
        self.multihash = bytes(multihash)

    @property
    def buffer(self):
        return varint.encode(1) + varint.encode(_CODECS[self.codec]) + self.multihash


def make_cid(version, codec, multihash):
    if version != 1:
        raise ValueError("cid shim: only CIDv1")
    if codec not in _CODECS:
        raise ValueError("cid shim: unknown codec %r" % codec)
    return CIDv1(codec, multihash)


def from_bytes(buf):
    s = io.BytesIO(bytes(buf))
    if varint.decode_stream(s) != 1:
        raise ValueError("cid shim: only CIDv1")
    code = varint.decode_stream(s)
    if code not in _NAMES:
        raise ValueError("cid shim: unknown codec 0x%x" % code)
    return CIDv1(_NAMES[code], s.read())


def from_string(text):
    prefix, body = text[:1], text[1:]
    if prefix == "b":
        body = body.upper()
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    elif prefix == "z":
        raw = base58.b58decode(body)
    else:
        raise ValueError("cid shim: unsupported multibase %r" % prefix)
    return from_bytes(raw)
