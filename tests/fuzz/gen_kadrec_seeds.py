#!/usr/bin/env python3
# Seeds of tests/fuzz/corpus/kadrec: varint-length-prefixed kad Messages
# (PUT_VALUE = 0, GET_VALUE = 1) carrying records, by a protobuf encoder
# independent of np_kadmsg.c. Run from the source root.
import hashlib, os
d = 'tests/fuzz/corpus/kadrec'
os.makedirs(d, exist_ok=True)
def uv(n):
    b = b''
    while True:
        if n < 0x80: return b + bytes([n])
        b += bytes([n & 0x7f | 0x80]); n >>= 7
def fld(no, val): return uv(no << 3 | 2) + uv(len(val)) + val
def msg(typ, key, rkey, val, tr=None):
    rec = fld(1, rkey) + fld(2, val) + (fld(5, tr) if tr else b'')
    body = uv(1 << 3) + uv(typ) + fld(2, key) + fld(3, rec)
    return uv(len(body)) + body
ed = bytes.fromhex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
ed_id = bytes([0, len(ed)]) + ed                    # identity multihash
rsa = bytes.fromhex("08001206") + b'notrsa'          # a "key" hashed to its ID
rsa_id = bytes([0x12, 0x20]) + hashlib.sha256(rsa).digest()
def put(k, v, tr=None): return msg(0, k, k, v, tr)
w = lambda n, b: open(os.path.join(d, n), 'wb').write(b)
w('pk_ed25519.bin', put(b'/pk/' + ed_id, ed))
w('pk_sha256.bin', put(b'/pk/' + rsa_id, rsa))
w('pk_wrong.bin', put(b'/pk/' + rsa_id, ed) + put(b'/pk/' + ed_id, ed[:-1] + b'\0'))
w('open_replace.bin', put(b'/open/a', b'one') + put(b'/open/a', b'two') + put(b'/open/a', b'two'))
w('best_select.bin', put(b'/best/k', b'b') + put(b'/best/k', b'a') + put(b'/best/k', b'c')
  + put(b'/best/k', b'\xee') + put(b'/best/k', b''))
w('full_store.bin', b''.join(put(b'/open/' + bytes([65 + i]), b'v') for i in range(6)))
w('expiry.bin', put(b'/open/x', b'1') + b''.join(put(b'/open/y', b'2') for _ in range(4)) + put(b'/open/x', b'0'))
w('unknown_ns.bin', put(b'/ipns/x', b'v') + put(b'nons', b'v') + put(b'/', b'v'))
w('get_answer.bin', msg(1, b'/open/q', b'/open/q', b'val', b'2026-11-29T00:00:00Z'))
