"""Shim for PyPI `pymultihash`: encode() and coerce_code(), as hivemind's PeerID.from_identity uses them."""
import varint

_CODES = {"identity": 0x00, "sha1": 0x11, "sha2-256": 0x12, "sha2-512": 0x13}


def coerce_code(name):
    if isinstance(name, int):
        return name
    return _CODES[name]


def encode(digest, code, length=None):
    if length is None:
        length = len(digest)
    return varint.encode(coerce_code(code)) + varint.encode(length) + bytes(digest[:length])
