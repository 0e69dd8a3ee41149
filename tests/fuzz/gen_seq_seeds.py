#!/usr/bin/env python3
"""Writes the seed programs (crash-*: reproducers of host bugs found by
the harness, kept as regression inputs) of fuzz_seq into tests/fuzz/corpus/seq/.
Op bytes (see tests/fuzz/fuzz_seq.c, LLVMFuzzerTestOneInput): op % 16 picks
the event, the bytes after it its arguments."""
import os, sys

def open_(s=0): return [0, s]
def req(t, a=0, b=0, s=0): return [1, s, t, a, b]
def raw_req(data, s=0): return [1, s, 14, 0, 0, len(data)] + list(data)
def persist(t, a=0, b=0, payload=b"", s=0): return [4, s, t, a, b, len(payload)] + list(payload)
def read(n=255, s=0): return [6, s, n]
def close(s=0): return [7, s, 0]
def shut_wr(s=0): return [7, s, 1]
def shut_rd(s=0): return [7, s, 2]
def step(n=15): return [8, n]
def jump(j, steps=0): return [10, (steps << 4) | j]  # j: 5,20,100,250ms,1,2.1,5.1,10.1,31,61s
def b(t, a=0): return [11, t, a]
def plugin(t, a=0): return [12, t, a]
def accept(s=0): return [13, (s << 1) | 1]
def rawsend(data, s=0): return [13, s << 1, len(data)] + list(data)

# request t: 0 IDENTIFY 1 CONNECT 2 STREAM_OPEN 3 STREAM_HANDLER 4 REMOVE_SH
# 5 LIST_PEERS 6 DISCONNECT 7 UPGRADE 9 NP_PING 10 PROTOCOLS 11 CONNS 12 VERSION
# 13 misc 14 raw. a&7 peer: 0 B, 1 hole, 2 self, 3 unknown, 4 invalid;
# (a>>3)%6 addrs: 0 none 1 B 2 hole 3 hole+B 4 garbage 5 self.
# b&7 CONNECT timeout: 0 none, 1 -> 0 (default), 2 -> 1 s, ...
PEER_B, HOLE, SELF, UNKNOWN, INVALID = 0, 1, 2, 3, 4
def connect(peer, addrs, tmo=0, s=0): return req(1, peer | (addrs << 3), tmo, s)
def upgrade(s=0): return req(7, 0, 0, s)
# persist t: 0 AddUnary(proto a) 1 RemoveUnary 2 CallUnary(b%4: 0 self, 3 hole, else B)
# 4 UnaryResponse (a&1 error, a&2 response) 6 Cancel 7 empty
# protos: 0 hello 1 echo 2 tp.good 3 tp.selfcall 4 tp.never 5 fz.a 6 fz.b
# 7 /natpeer/echo/1.0.0 8 /ipfs/ping/1.0.0 9 /ipfs/id/1.0.0
def add_unary(proto, balanced=0, s=0): return persist(0, proto, balanced, b"", s)
def rm_unary(proto, s=0): return persist(1, proto, 0, b"", s)
def call(proto, target, data=b"x", s=0): return persist(2, proto, target, data, s)
def respond(ok=True, idx=0, s=0): return persist(4, 2 if ok else 1, idx, b"resp", s)
def cancel(idx=0, s=0): return persist(6, 0, idx, b"", s)
# plugin: t 0/1 toggle file a (0 hello 1 echo 2 tp_good 3 tp_good_v2 4 tp_dup
# 5 tp_failinit 6 tp_old_minor; a&8 force add), t|4 then reload;
# t 2 config variant a%6 + reload; t 3 reload.
def plug(i, reload=True, force=False): return plugin(4 if reload else 0, i | (8 if force else 0))
def conf(v): return plugin(2, v)
def reload(): return plugin(3, 0)

seeds = {
 "identify": open_() + step() + req(0) + step() + read(),
 "connect-b": open_() + step() + connect(PEER_B, 1) + step() + step() + read(),
 "connect-b-ping": open_() + connect(PEER_B, 1) + step() + step() + read() + req(9, 1, 60) + step() + step() + read(),
 "connect-hole-timeout": open_() + connect(HOLE, 2, 2) + step() + jump(4, 2) + step() + read(),
 "crash-connect-hangup-op-free-uaf": open_() + connect(HOLE, 2, 2) + step() + close() + jump(4, 2) + step(),
 "connect-hole-shutwr": open_() + connect(HOLE, 2, 2) + step() + shut_wr() + jump(5, 2) + step(),
 "connect-b-hangup": open_() + connect(PEER_B, 1) + close() + step() + step(),
 "ping-hole-hangup": open_() + connect(HOLE, 2, 2) + step() + read() + req(9, 1 | (HOLE << 1), 60) + close() + jump(4, 2) + step(),
 "crash-ping-hangup-st-data-uaf": open_() + connect(PEER_B, 1) + step() + step() + read() + req(9, 1, 60) + close() + step() + step(),
 "ping-b-frozen": open_() + connect(PEER_B, 1) + step() + step() + read() + b(6) + req(9, 1, 60) + step() + close() + jump(5, 2) + step(),
 "stream-open-echo": open_() + connect(PEER_B, 1) + step() + step() + read() + req(2, 0, 7) + step() + step() + read() + rawsend(b"hello") + step() + read() + close() + step(),
 "stream-open-hangup": open_() + connect(PEER_B, 1) + step() + read() + req(2, 0, 7) + close() + step() + step(),
 "stream-open-b-dies": open_() + connect(PEER_B, 1) + step() + read() + req(2, 0, 7) + step() + step() + read() + b(7) + step() + read() + rawsend(b"x") + step(),
 "list-peers": open_() + connect(PEER_B, 1) + step() + read() + req(5) + step() + read() + req(11) + step() + read(),
 "disconnect-b": open_() + connect(PEER_B, 1) + step() + read() + req(6, 0) + step() + read() + req(5) + step() + read(),
 "b-disconnects": open_() + connect(PEER_B, 1) + step() + read() + b(5) + step() + step() + req(11) + step() + read(),
 "b-freezes-idle": open_() + connect(PEER_B, 1) + step() + read() + b(6) + jump(8, 3) + jump(9, 3) + req(11) + step() + read(),
 "b-dies-restarts": open_() + connect(PEER_B, 1) + step() + read() + b(7) + step() + b(7) + connect(PEER_B, 1) + step() + step() + read(),
 "persist-add-call-self": open_() + upgrade() + step() + read() + add_unary(5) + step() + read() + open_(1) + upgrade(1) + step() + read(s=1) + call(5, 0, b"q", 1) + step() + read() + respond(True) + step() + read(s=1),
 "persist-routed-hangup": open_() + upgrade() + step() + read() + add_unary(5) + step() + read() + open_(1) + upgrade(1) + step() + call(5, 0, b"q", 1) + step() + read() + close(0) + step() + read(s=1),
 "persist-caller-hangup": open_() + upgrade() + step() + read() + add_unary(5) + step() + read() + open_(1) + upgrade(1) + step() + call(5, 0, b"q", 1) + step() + read() + close(1) + step() + respond(True) + step(),
 "persist-cancel": open_() + upgrade() + step() + add_unary(5) + step() + open_(1) + upgrade(1) + step() + call(5, 0, b"q", 1) + step() + cancel(0, 1) + step() + read() + respond(False) + step() + read(s=1),
 "persist-call-b-echo": open_() + connect(PEER_B, 1) + step() + read() + upgrade() + step() + read() + call(1, 1, b"hi") + step() + step() + read(),
 "persist-call-b-never-timeout": open_() + connect(PEER_B, 1) + step() + read() + upgrade() + step() + call(4, 1) + step() + jump(8, 2) + step() + read(),
 "persist-call-b-never-hangup": open_() + connect(PEER_B, 1) + step() + read() + upgrade() + step() + call(4, 1) + step() + close() + step() + jump(8, 2),
 "persist-call-b-selfcall": open_() + connect(PEER_B, 1) + step() + read() + upgrade() + step() + call(3, 1) + step() + jump(1, 2) + step() + read(),
 "b-calls-client": open_() + upgrade() + step() + read() + add_unary(6) + step() + b(0) + step() + step() + b(1, 6 << 2) + step() + step() + read() + respond(True) + step() + step(),
 "b-calls-client-cancel": open_() + upgrade() + step() + add_unary(6) + step() + b(0) + step() + step() + b(1, 6 << 2) + step() + read() + b(2, 0) + step() + step() + read() + respond(True) + step(),
 "b-calls-client-hangup": open_() + upgrade() + step() + add_unary(6) + step() + b(0) + step() + step() + b(1, 6 << 2) + step() + read() + close() + step() + step(),
 "b-calls-plugin": plug(0) + plug(1) + b(0) + step() + step() + b(1, 0 << 2) + b(1, 1 | (1 << 2)) + step() + step(),
 "crash-unload-call-done-scope-and-freed-call": plug(0) + plug(2) + b(0) + step() + step() + b(1, 3 << 2) + step() + plug(2) + step() + jump(1, 2),
 "plugin-selfcall-cancel": plug(0) + plug(2) + open_() + upgrade() + step() + call(3, 0) + step() + cancel(0) + jump(1, 2) + step(),
 "plugin-selfcall-unload": plug(0) + plug(2) + open_() + upgrade() + step() + call(3, 0) + step() + plug(0) + jump(1, 2) + step() + read(),
 "plugin-replace-v2": plug(2) + open_() + upgrade() + step() + call(2, 0) + plug(3, True, True) + step() + read() + call(2, 0) + step() + read(),
 "plugin-dup-failinit-old": plug(0) + plug(4) + plug(5) + plug(6) + reload() + open_() + req(10) + step() + read(),
 "plugin-conf-variants": plug(0) + plug(1) + conf(1) + conf(2) + conf(3) + conf(4) + conf(5) + conf(0) + open_() + req(10) + step() + read(),
 "plugin-hangs-on-call": plug(2) + open_() + upgrade() + step() + call(4, 0) + step() + plug(2) + step() + read(),
 "stream-handler-b-opens": open_() + req(3, 0, 5) + step() + read() + b(0) + step() + step() + b(3, 5 << 1) + step() + step() + accept(1) + step() + read(s=1) + rawsend(b"pong", 1) + b(4, 2 << 1) + step() + close(1) + step(),
 "stream-handler-remove": open_() + req(3, 0, 5) + step() + read() + req(4, 0, 5) + step() + read() + req(3, 2, 5 | (6 << 4)) + step() + read(),
 "b-stream-echo-reset": plug(1) + b(0) + step() + step() + b(3, 7 << 1) + step() + step() + b(4, 2 << 1) + step() + b(4, 0) + step(),
 "natpeer-misc": open_() + req(12) + req(10) + step() + read() + req(13, 0) + step() + read() + open_(1) + raw_req(b"\x05\x08\x00\x10\x01", 1) + step() + read(s=1),
 "raw-garbage": open_() + raw_req(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01") + step() + read() + open_(1) + raw_req(b"\x03\x08\x01\x12", 1) + step(),
 "pipelined": open_() + connect(HOLE, 2, 3) + req(0) + step() + read() + jump(5) + step(),
 "shut-rd": open_() + connect(PEER_B, 1) + shut_rd() + step() + step() + req(0) + step(),
 "many-clients": sum((open_(i) + connect(HOLE, 2, 2, i) for i in range(6)), []) + step() + close(2) + close(4) + jump(4, 2) + step(),
 "host-disconnect-during-call": open_() + connect(PEER_B, 1) + step() + read() + upgrade() + step() + call(4, 1) + step() + open_(1) + req(6, 0, 0, 1) + step() + read() + read(s=1),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "seq")
os.makedirs(out, exist_ok=True)
for name, prog in seeds.items():
    assert all(0 <= x < 256 for x in prog), name
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(prog))
print(f"{len(seeds)} seeds in {out}")
