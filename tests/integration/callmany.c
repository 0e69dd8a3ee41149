/* callmany SOCKET PEER PROTO N [BYTES]: N unary calls in flight at once on
 * one persistent control connection (hivemind's pattern); prints
 * "answered=A errors=E" and exits 0 when all N were answered correctly
 * (each response must equal its request: use an echo handler). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "np_crypto.h"
#include "np_lp.h"
#include "np_peerid.h"
#include "proto/p2pd.pb-c.h"

static int send_msg(int fd, const uint8_t *d, size_t n) {
  uint8_t pre[10];
  np_ssize p = np_lp_put_prefix(n, pre, sizeof(pre));
  if (write(fd, pre, (size_t)p) != p)
    return -1;
  while (n) {
    ssize_t w = write(fd, d, n);
    if (w <= 0)
      return -1;
    d += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct sockaddr_un un;
  np_peerid id;
  int fd, n, bytes = 32, answered = 0, errors = 0;
  uint8_t *buf;
  size_t len = 0, cap = 64u << 20;
  double end;
  if (argc < 5) {
    fprintf(stderr, "usage: callmany SOCKET PEER PROTO N [BYTES]\n");
    return 2;
  }
  n = atoi(argv[4]);
  if (argc > 5)
    bytes = atoi(argv[5]);
  if (np_peerid_parse(&id, argv[2], strlen(argv[2])) != 0 || n <= 0 ||
      bytes < 8)
    return 2;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  snprintf(un.sun_path, sizeof(un.sun_path), "%s", argv[1]);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&un, sizeof(un)) != 0) {
    perror("connect");
    return 3;
  }
  buf = malloc(cap);
  {
    Np__P2pd__Request rq = NP__P2PD__REQUEST__INIT;
    uint8_t b[16];
    rq.type = NP__P2PD__REQUEST__TYPE__PERSISTENT_CONN_UPGRADE;
    send_msg(fd, b, np__p2pd__request__pack(&rq, b));
  }
  for (int i = 0; i < n; i++) {
    Np__P2pd__PersistentConnectionRequest pr =
        NP__P2PD__PERSISTENT_CONNECTION_REQUEST__INIT;
    Np__P2pd__CallUnaryRequest cu = NP__P2PD__CALL_UNARY_REQUEST__INIT;
    uint8_t cid[16], *data = calloc(1, (size_t)bytes), *out;
    size_t sz;
    memset(cid, 0, sizeof(cid));
    memcpy(cid, &i, sizeof(i));
    cid[6] = 0x40;
    cid[8] = 0x80;
    snprintf((char *)data, (size_t)bytes, "call-%d", i);
    pr.callid.data = cid;
    pr.callid.len = 16;
    cu.peer.data = id.bytes;
    cu.peer.len = id.len;
    cu.proto = argv[3];
    cu.data.data = data;
    cu.data.len = (size_t)bytes;
    pr.message_case = NP__P2PD__PERSISTENT_CONNECTION_REQUEST__MESSAGE_CALL_UNARY;
    pr.callunary = &cu;
    sz = np__p2pd__persistent_connection_request__get_packed_size(&pr);
    out = malloc(sz);
    np__p2pd__persistent_connection_request__pack(&pr, out);
    if (send_msg(fd, out, sz) != 0)
      return 3;
    free(out);
    free(data);
  }
  end = (double)time(NULL) + 60;
  while (answered + errors < n && (double)time(NULL) < end) {
    const uint8_t *m;
    size_t ml;
    np_ssize k = np_lp_parse(buf, len, cap, &m, &ml);
    if (k >= 0) {
      /* The upgrade's Response{OK} does not parse as a
       * PersistentConnectionResponse (field 1 has another wire type). */
      Np__P2pd__PersistentConnectionResponse *r =
          np__p2pd__persistent_connection_response__unpack(NULL, ml, m);
      if (r && r->callid.len == 16) {
        int i;
        char want[64];
        memcpy(&i, r->callid.data, sizeof(i));
        snprintf(want, sizeof(want), "call-%d", i);
        if (r->message_case ==
                NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_CALL_UNARY_RESPONSE &&
            r->callunaryresponse->has_response &&
            r->callunaryresponse->response.len == (size_t)bytes &&
            strlen(want) < (size_t)bytes &&
            memcmp(r->callunaryresponse->response.data, want,
                   strlen(want) + 1) == 0)
          answered++;
        else {
          if (errors++ == 0 &&
              r->message_case ==
                  NP__P2PD__PERSISTENT_CONNECTION_RESPONSE__MESSAGE_DAEMON_ERROR)
            fprintf(stderr, "first error: %s\n",
                    r->daemonerror->message ? r->daemonerror->message : "?");
        }
      }
      if (r)
        np__p2pd__persistent_connection_response__free_unpacked(r, NULL);
      memmove(buf, buf + k, len - (size_t)k);
      len -= (size_t)k;
      if (answered + errors == n)
        break;
      continue;
    }
    {
      struct pollfd p = {fd, POLLIN, 0};
      ssize_t r;
      if (poll(&p, 1, 1000) <= 0)
        continue;
      r = read(fd, buf + len, cap - len);
      if (r <= 0)
        break;
      len += (size_t)r;
    }
  }
  printf("answered=%d errors=%d\n", answered, errors);
  np_crypto_cleanup();
  free(buf);
  close(fd);
  return answered == n ? 0 : 1;
}
