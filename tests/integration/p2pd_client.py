#!/usr/bin/env python3
"""Minimal p2pd control client for p2pd_cli.sh (hand-rolled protobuf).

  p2pd_client.py persist ADDR HOLD [PEER]
      PERSISTENT_CONN_UPGRADE; with PEER, a CallUnary to PEER on proto
      "selftest" and print the daemonError (or "response"); then hold the
      connection HOLD seconds and close it.
  p2pd_client.py streamopen ADDR PEER
      STREAM_OPEN to PEER; print "ERROR <msg>" or "OK".
"""
import os
import socket
import sys
import time

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(s):
    n = 0
    for ch in s:
        n = n * 58 + B58.index(ch)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    pad = len(s) - len(s.lstrip("1"))
    return b"\0" * pad + raw


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, data):  # length-delimited field
    return uvarint(num << 3 | 2) + uvarint(len(data)) + data


def connect(addr):
    p = addr.split("/")
    if addr.startswith("/unix/"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(addr[len("/unix"):])
    else:
        s = socket.socket(socket.AF_INET6 if p[1] == "ip6" else socket.AF_INET)
        s.connect((p[2], int(p[4])))
    s.settimeout(10)
    return s


def read_uvarint(s):
    shift = n = 0
    while True:
        b = s.recv(1)
        if not b:
            raise EOFError("connection closed")
        n |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            return n


def read_msg(s):
    n = read_uvarint(s)
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def parse(buf):
    """protobuf -> {field: [values]} (varints as int, the rest as bytes)"""
    out, i = {}, 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
        elif wt == 2:
            ln, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                ln |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            v = buf[i:i + ln]
            i += ln
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out


def send(s, msg):
    s.sendall(uvarint(len(msg)) + msg)


def response_text(buf):
    r = parse(buf)
    if r.get(1, [0])[0] == 1:
        err = parse(r[2][0]) if 2 in r else {}
        return "ERROR " + err.get(1, [b""])[0].decode()
    return "OK"


def main():
    cmd, addr = sys.argv[1], sys.argv[2]
    s = connect(addr)
    if cmd == "persist":
        hold = float(sys.argv[3])
        send(s, b"\x08\x09")  # Request{type: PERSISTENT_CONN_UPGRADE}
        print("upgrade", response_text(read_msg(s)), flush=True)
        if len(sys.argv) > 4:
            call_id = os.urandom(16)
            cu = field(1, b58decode(sys.argv[4])) + field(2, b"selftest") + \
                field(3, b"x")
            send(s, field(1, call_id) + field(3, cu))
            r = parse(read_msg(s))
            if 4 in r:
                err = parse(r[4][0])
                print("daemonError", err.get(1, [b""])[0].decode(), flush=True)
            else:
                print("response", sorted(r), flush=True)
        time.sleep(hold)
    elif cmd == "streamopen":
        so = field(1, b58decode(sys.argv[3])) + field(2, b"/x/1.0.0")
        send(s, b"\x08\x02" + field(3, so))
        print(response_text(read_msg(s)), flush=True)
    s.close()


if __name__ == "__main__":
    main()
