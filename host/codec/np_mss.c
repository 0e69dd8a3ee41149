#include "np_mss.h"

#include <string.h>

#include "np_varint.h"

static const char header_name[] = NP_MSS_PROTOCOL;

np_ssize np_mss_encode(const char *name, size_t len, uint8_t *out, size_t cap) {
  size_t plen;
  if (len == 0 || memchr(name, '\n', len) != NULL)
    return NP_EINVAL;
  if (len > NP_MSS_MAX_NAME)
    return NP_ELIMIT;
  plen = np_varint_size(len + 1);
  if (cap < plen + len + 1)
    return NP_ELIMIT;
  np_varint_encode(len + 1, out, cap);
  memcpy(out + plen, name, len);
  out[plen + len] = '\n';
  return (np_ssize)(plen + len + 1);
}

/* Wire size of the message carrying a |len|-byte name. */
static size_t msg_size(size_t len) { return np_varint_size(len + 1) + len + 1; }

static size_t room(const np_mss *m) { return sizeof(m->out) - m->out_len; }

static int queue(np_mss *m, const char *name, size_t len) {
  np_ssize n = np_mss_encode(name, len, m->out + m->out_len, room(m));
  if (n < 0)
    return (int)n;
  m->out_len += (size_t)n;
  return 0;
}

static np_ssize fail(np_mss *m, int err) {
  m->state = NP_MSS_FAILED;
  m->err = err;
  return err;
}

int np_mss_init_dialer(np_mss *m, const char *const *protos, size_t n,
                       int flags) {
  size_t i;
  if (protos == NULL || n == 0 || n > NP_MSS_MAX_PROPOSALS ||
      (flags & ~NP_MSS_LAZY) != 0 || ((flags & NP_MSS_LAZY) && n != 1))
    return NP_EINVAL;
  for (i = 0; i < n; i++) {
    size_t len = protos[i] ? strlen(protos[i]) : 0;
    if (len == 0 || len > NP_MSS_MAX_NAME || strchr(protos[i], '\n'))
      return NP_EINVAL;
  }
  memset(m, 0, offsetof(np_mss, line));
  m->line[0] = '\0';
  m->role = NP_MSS_DIALER;
  m->flags = flags;
  m->protos = protos;
  m->nprotos = n;
  /* Header and first proposal in one write: never wait for the listener. */
  queue(m, header_name, sizeof(header_name) - 1);
  queue(m, protos[0], strlen(protos[0]));
  return 0;
}

int np_mss_init_listener(np_mss *m, np_mss_lookup_cb lookup, void *ud) {
  if (lookup == NULL)
    return NP_EINVAL;
  memset(m, 0, offsetof(np_mss, line));
  m->line[0] = '\0';
  m->role = NP_MSS_LISTENER;
  m->lookup = lookup;
  m->ud = ud;
  queue(m, header_name, sizeof(header_name) - 1);
  return 0;
}

static int is(const char *name, size_t len, const char *lit) {
  return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

/* Act on the complete message in m->line (name of |len| bytes). Returns 0
 * once handled, 1 if the answer does not fit the output buffer yet, or a
 * negative error. */
static int handle(np_mss *m, size_t len) {
  const char *name = m->line;
  if (!m->got_header) {
    if (!is(name, len, header_name))
      return NP_EPROTO;
    m->got_header = 1;
    return 0;
  }
  if (m->role == NP_MSS_DIALER) {
    const char *next;
    if (is(name, len, m->protos[m->cur])) {
      m->state = NP_MSS_DONE;
      return 0;
    }
    if (!is(name, len, "na"))
      return NP_EPROTO;
    /* A lazy dialer already wrote data for its one protocol: go fails the
     * stream on `na` too. */
    if ((m->flags & NP_MSS_LAZY) || m->cur + 1 == m->nprotos)
      return NP_ENOPROTO;
    next = m->protos[m->cur + 1];
    if (room(m) < msg_size(strlen(next)))
      return 1;
    m->cur++;
    return queue(m, next, strlen(next));
  }
  /* Listener. Names with NUL could not be compared as C strings, nor can a
   * name with '\n' inside be proposed by us; `ls` is refused like go does
   * rather than listing every handler. */
  if (len > 0 && memchr(name, '\0', len) == NULL &&
      memchr(name, '\n', len) == NULL && !is(name, len, "ls") &&
      m->lookup(name, len, m->ud)) {
    if (room(m) < msg_size(len))
      return 1;
    m->state = NP_MSS_DONE;
    return queue(m, name, len);
  }
  if (m->na_count >= NP_MSS_MAX_NA)
    return NP_ELIMIT;
  if (room(m) < msg_size(2))
    return 1;
  m->na_count++;
  return queue(m, "na", 2);
}

np_ssize np_mss_feed(np_mss *m, const uint8_t *in, size_t len) {
  size_t off = 0;
  if (m->state == NP_MSS_FAILED)
    return m->err;
  if (m->state == NP_MSS_DONE)
    return 0;
  for (;;) {
    size_t take;
    uint8_t b;
    if (m->pending) {
      int rv = handle(m, m->want - 1);
      if (rv < 0)
        return fail(m, rv);
      if (rv > 0)
        return (np_ssize)off;
      m->pending = 0;
      if (m->state == NP_MSS_DONE)
        return (np_ssize)off;
    }
    if (off == len)
      return (np_ssize)off;
    if (!m->in_body) {
      uint64_t v;
      b = in[off++];
      m->hdr[m->hdr_len++] = b;
      if (b & 0x80) {
        /* Two prefix bytes reach 16383: a third can only mean too long. */
        if (m->hdr_len == sizeof(m->hdr))
          return fail(m, NP_ELIMIT);
        continue;
      }
      if (np_varint_decode(m->hdr, m->hdr_len, &v) < 0)
        return fail(m, NP_EPROTO);
      m->hdr_len = 0;
      if (v == 0)
        return fail(m, NP_EPROTO);
      if (v > NP_MSS_MAX_MSG)
        return fail(m, NP_ELIMIT);
      m->want = (size_t)v;
      m->have = 0;
      m->in_body = 1;
      continue;
    }
    take = len - off;
    if (take > m->want - m->have)
      take = m->want - m->have;
    memcpy(m->line + m->have, in + off, take);
    m->have += take;
    off += take;
    if (m->have == m->want) {
      if (m->line[m->want - 1] != '\n')
        return fail(m, NP_EPROTO);
      m->line[m->want - 1] = '\0';
      m->in_body = 0;
      m->pending = 1;
    }
  }
}

size_t np_mss_output(const np_mss *m, const uint8_t **out) {
  *out = m->out;
  return m->out_len;
}

void np_mss_drain(np_mss *m, size_t n) {
  if (n > m->out_len)
    n = m->out_len;
  memmove(m->out, m->out + n, m->out_len - n);
  m->out_len -= n;
}

int np_mss_state(const np_mss *m) { return m->state; }

int np_mss_error(const np_mss *m) {
  return m->state == NP_MSS_FAILED ? m->err : 0;
}

const char *np_mss_protocol(const np_mss *m, size_t *len) {
  if (m->state != NP_MSS_DONE)
    return NULL;
  if (len)
    *len = m->want - 1;
  return m->line;
}

int np_mss_can_write(const np_mss *m) {
  return m->state == NP_MSS_DONE ||
         (m->state == NP_MSS_NEGOTIATING && m->role == NP_MSS_DIALER &&
          (m->flags & NP_MSS_LAZY));
}
