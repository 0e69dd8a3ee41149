#!/usr/bin/env python3
"""natprobe: UDP/TCP helpers for tests/natlab (run inside a lab node).

  server P1 P2 PEER_IP   reflector on UDP P1 and P2 (public-1, public-2)
  who HOST:PORT          ask a reflector which address it saw; prints ip:port
  rtt HOST:PORT [N]      median round trip (ms) of N requests to a reflector
  probe PUB1 PUB2 P1 P2 [--brief]   RFC 4787 mapping + filtering class
  listen PORT SECS       count UDP datagrams and TCP connects on PORT for SECS
                         (or until SIGTERM)
  knock HOST:PORT        send 3 UDP datagrams, try one TCP connect (1 s)
  delayer QNUM DELAY_MS LOSS_PCT   NFQUEUE egress delay/loss (no netem here)

Every wait is bounded; nothing here runs forever except server and delayer,
which natlab.sh starts inside the lab and kills at teardown.
"""
import heapq, itertools, random, select, signal, socket, struct, sys, time


def udp(port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    return s


def hp(text):
    h, p = text.rsplit(":", 1)
    return (h, int(p))


def tag():
    return "%08x" % random.getrandbits(32)


def ask(s, dst, msg, want, tmo=0.5, tries=4):
    """Send msg to dst until a reply whose first word is `want` and whose tag
    matches arrives; at most tries * tmo seconds."""
    t = msg.split()[1]
    for _ in range(tries):
        s.sendto(msg.encode(), dst)
        end = time.time() + tmo
        while (left := end - time.time()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data, src = s.recvfrom(2048)
            f = data.decode(errors="replace").split()
            if len(f) >= 2 and f[0] == want and f[1] == t:
                return f, src
    return None, None


# ------------------------------------------------------------ reflector
def server(p1, p2, peer):
    """WHO -> "ME tag ip:port" (STUN-like). FILTER -> replies from the same
    socket, the other port, and (through the peer reflector) the other IP on
    both ports: the RFC 5780 change-port / change-address tests."""
    s1, s2 = udp(int(p1)), udp(int(p2))
    while True:
        for s in select.select([s1, s2], [], [])[0]:
            data, a = s.recvfrom(2048)
            f = data.decode(errors="replace").split()
            other = s2 if s is s1 else s1
            print(time.strftime("%X"), s.getsockname()[1], "<-", "%s:%d" % a,
                  *f[:4], flush=True)
            if len(f) < 2:
                continue
            if f[0] == "WHO":
                s.sendto(("ME %s %s:%d" % (f[1], *a)).encode(), a)
            elif f[0] == "FILTER":
                s.sendto(("F %s same" % f[1]).encode(), a)
                other.sendto(("F %s port" % f[1]).encode(), a)
                s1.sendto(("RELAY %s %s %d" % (f[1], *a)).encode(),
                          (peer, int(p1)))
            elif f[0] == "RELAY" and a[0] == peer and len(f) == 4:
                dst = (f[2], int(f[3]))
                s1.sendto(("F %s ip" % f[1]).encode(), dst)
                s2.sendto(("F %s ipport" % f[1]).encode(), dst)


def rtt(target, n="5"):
    """Median round trip of N WHO requests to a reflector, in ms."""
    s, dst, times = udp(), hp(target), []
    for _ in range(int(n)):
        t0 = time.time()
        f, _ = ask(s, dst, "WHO " + tag(), "ME")
        if f:
            times.append((time.time() - t0) * 1000)
    if not times:
        print("no answer")
        sys.exit(1)
    times.sort()
    print("%.1f" % times[len(times) // 2])


def who(target):
    f, _ = ask(udp(), hp(target), "WHO " + tag(), "ME")
    print(f[2] if f else "no answer")
    sys.exit(0 if f else 1)


# ------------------------------------------------------------ classification
def probe(pub1, pub2, p1, p2, *opts):
    p1, p2 = int(p1), int(p2)
    s = udp()
    lport = s.getsockname()[1]
    dsts = [(pub1, p1), (pub1, p2), (pub2, p1)]
    mapped = []
    for d in dsts:
        f, _ = ask(s, d, "WHO " + tag(), "ME")
        mapped.append(f[2] if f else None)
    if None in mapped:
        mapping = "no-UDP"
    elif mapped[0] == mapped[1] == mapped[2]:
        mapping = "EIM"
    elif mapped[0] == mapped[1]:
        mapping = "ADM"
    else:
        mapping = "APDM"
    # Filtering: a fresh socket talks to pub1:p1 only; which unsolicited
    # senders (other port, other IP, other IP and port) get through?
    s2, t = udp(), tag()
    got = set()
    f, _ = ask(s2, (pub1, p1), "FILTER " + t, "F")
    if f:
        got.add(f[2])
        end = time.time() + 1.0
        while (left := end - time.time()) > 0:
            if not select.select([s2], [], [], left)[0]:
                break
            g = s2.recvfrom(2048)[0].decode(errors="replace").split()
            if len(g) == 3 and g[0] == "F" and g[1] == t:
                got.add(g[2])
    if not f:
        filtering = "no-UDP"
    elif {"ip", "ipport"} & got:
        filtering = "EIF"
    elif "port" in got:
        filtering = "ADF"
    else:
        filtering = "APDF"
    legacy = {("EIM", "EIF"): "full cone", ("EIM", "ADF"): "restricted cone",
              ("EIM", "APDF"): "port-restricted cone"}.get(
                  (mapping, filtering),
                  "symmetric" if mapping in ("ADM", "APDM") else "?")
    pp = bool(mapped[0]) and mapped[0].endswith(":%d" % lport)
    if "--brief" in opts:
        print("%s+%s%s" % (mapping, filtering, " pp" if pp else ""))
        return
    print("local port      %d" % lport)
    for d, m in zip(dsts, mapped):
        print("mapped via %-15s %s" % ("%s:%d" % d, m))
    print("unsolicited in  %s (tested: same, port, ip, ipport)"
          % (",".join(sorted(got)) or "-"))
    print("RESULT mapping=%s filtering=%s (%s)%s" % (
        mapping, filtering, legacy, " port-preserving" if pp else ""))


# ------------------------------------------------------------ reachability
class Stop(Exception):
    pass


def stop_on_term(*_):
    raise Stop()


def listen(port, secs):
    """Count what arrives on UDP and TCP PORT for SECS seconds, or until
    SIGTERM. Prints "ready" once both sockets are bound, then "udp=N tcp=M"."""
    port, end = int(port), time.time() + float(secs)
    u = udp(port)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", port))
    t.listen(8)
    nu = nt = 0
    signal.signal(signal.SIGTERM, stop_on_term)
    print("ready", flush=True)
    try:
        while (left := end - time.time()) > 0:
            for s in select.select([u, t], [], [], left)[0]:
                if s is u:
                    u.recvfrom(2048)
                    nu += 1
                else:
                    c, _ = t.accept()
                    c.close()
                    nt += 1
    except Stop:
        pass
    print("udp=%d tcp=%d" % (nu, nt), flush=True)


def knock(target):
    """3 UDP datagrams and one TCP connect (1 s) to HOST:PORT; prints
    "tcp=connected|refused|unreachable|timeout"."""
    dst = hp(target)
    s = udp()
    for i in range(3):
        try:
            s.sendto(b"KNOCK %d" % i, dst)
        except OSError:
            pass
        time.sleep(0.05)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(1.0)
    try:
        c.connect(dst)
        r = "connected"
    except socket.timeout:
        r = "timeout"
    except ConnectionRefusedError:
        r = "refused"
    except OSError:
        r = "unreachable"
    c.close()
    print("tcp=%s" % r)


# ------------------------------------------------------------ NFQUEUE delayer
def delayer(qnum, delay_ms, loss_pct):
    """Bind NFQUEUE qnum over raw NETLINK_NETFILTER (meta only, no payload
    copy), hold each packet id for DELAY_MS, drop LOSS_PCT % of them."""
    qnum, delay, loss = int(qnum), float(delay_ms) / 1000, float(loss_pct) / 100
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind((0, 0))

    def attr(t, p):
        n = 4 + len(p)
        return struct.pack("=HH", n, t) + p + b"\0" * (-n % 4)

    def msg(mtype, payload, flags=1):  # nlmsghdr + nfgenmsg(AF_UNSPEC, v0, q)
        body = struct.pack("=BBH", 0, 0, socket.htons(qnum)) + payload
        return struct.pack("=IHHII", 16 + len(body), mtype, flags, 0, 0) + body

    def config(payload):  # NFQNL_MSG_CONFIG, wait for the ACK
        s.send(msg(0x302, payload, 1 | 4))
        r = s.recv(65536)
        if (struct.unpack_from("=H", r, 4)[0] == 2 and
                struct.unpack_from("=i", r, 16)[0]):
            raise SystemExit("nfqueue config failed: errno %d"
                             % -struct.unpack_from("=i", r, 16)[0])

    config(attr(1, struct.pack("!BBH", 1, 0, socket.AF_INET)))  # CMD BIND
    config(attr(2, struct.pack("!IB", 0, 1)))  # PARAMS: COPY_META
    config(attr(3, struct.pack("!I", 8192)))  # QUEUE_MAXLEN

    def verdict(pid, v):  # NFQNL_MSG_VERDICT with NFQA_VERDICT_HDR
        s.send(msg(0x301, attr(2, struct.pack("!II", v, pid))))

    heap, seq = [], itertools.count()
    print("delayer queue %d delay %.1fms loss %.1f%%"
          % (qnum, delay * 1000, loss * 100), flush=True)
    while True:
        tmo = max(0.0, heap[0][0] - time.time()) if heap else None
        if select.select([s], [], [], tmo)[0]:
            data, off = s.recv(1 << 16), 0
            while off + 16 <= len(data):
                ln, ty = struct.unpack_from("=IH", data, off)
                if ty == 0x300:  # NFQNL_MSG_PACKET
                    a = off + 20
                    while a + 4 <= off + ln:
                        al, at = struct.unpack_from("=HH", data, a)
                        if at & 0x3fff == 1:  # NFQA_PACKET_HDR: packet id
                            pid = struct.unpack_from("!I", data, a + 4)[0]
                            if random.random() < loss:
                                verdict(pid, 0)  # NF_DROP
                            else:
                                heapq.heappush(
                                    heap, (time.time() + delay, next(seq), pid))
                        a += max(4, (al + 3) & ~3)
                off += max(16, (ln + 3) & ~3)
        while heap and heap[0][0] <= time.time():
            verdict(heapq.heappop(heap)[2], 1)  # NF_ACCEPT


if __name__ == "__main__":
    cmds = {"server": server, "who": who, "rtt": rtt, "probe": probe, "listen": listen,
            "knock": knock, "delayer": delayer}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
