/* Incoming unary calls: the np_call a handler answers, whoever the caller
 * is (the network, a control client, a plugin of this host). */
#ifndef NP_CALL_H
#define NP_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "natpeer/plugin.h"
#include "np_list.h"
#include "np_loop.h"
#include "np_peerid.h"
#include "np_proto.h"

typedef struct np_host np_host;

/* Caller-side completion: err == 0 with the response, NP_EREMOTE with the
 * handler's error message, or a local error (data NULL). Runs once, unless
 * the caller withdrew with np_call_caller_gone first. Borrowed data. */
typedef void (*np_call_complete_fn)(void *ud, int err, const uint8_t *data,
                                    size_t len);

enum np_call_state {
  NP_CALL_QUEUED = 1, /* handler runs on the next loop turn */
  NP_CALL_PENDING,    /* handler has it, answer outstanding */
  NP_CALL_DEAD        /* answered or withdrawn; freed by its queued turn */
};

struct np_call {
  np_host *host;
  np_list owner_link; /* in the handler owner's pending list */
  char peer[NP_PEERID_STRMAX];
  np_unary_cb cb;
  void *cb_ud;
  np_call_complete_fn done;
  void *done_ud;
  void (*cancel_cb)(np_call *c, void *cud);
  void *cancel_ud;
  uint8_t *req;
  size_t req_len;
  int state;
  uint8_t call_id[16]; /* the caller's callId when it sent one (unary wire
                          format), else random: control clients see it */
  np_defer run; /* hands the call to its handler on the next loop turn */
};

/* Hand |req| (copied) to unary handler |h| on the next loop turn. The call
 * is linked into |owner_list| (the handler owner's pending list) so the
 * owner can fail it when it goes away. Returns 0 (and *pc) or NP_ENOMEM /
 * NP_ELIMIT (too many pending calls). */
int np_call_dispatch(np_host *host, const np_handler *h, np_list *owner_list,
                     const char *caller_peer, const uint8_t *req, size_t len,
                     np_call_complete_fn done, void *done_ud, np_call **pc);
/* Same, carrying the caller's 16-byte callId (NULL: a random one). */
int np_call_dispatch_id(np_host *host, const np_handler *h,
                        np_list *owner_list, const char *caller_peer,
                        const uint8_t *call_id, const uint8_t *req, size_t len,
                        np_call_complete_fn done, void *done_ud,
                        np_call **pc);

/* The caller went away: the handler's cancel callback runs (if any) and
 * the call is freed. |done| will not run. */
void np_call_caller_gone(np_call *c);
/* The handler's owner is going away: the caller completes with
 * NP_ECANCELED and the call is freed. */
void np_call_owner_gone(np_call *c);

/* Answer |c| once. A handle already answered, withdrawn or freed (a
 * plugin answering twice) gets NP_EINVAL and a warning, never a read of
 * freed memory. */
int np_call_reply(np_call *c, const uint8_t *resp, size_t len);
int np_call_fail(np_call *c, const char *msg);
/* 1 if |c| is an allocated call not yet answered (checks the handle
 * without dereferencing a stale one). */
int np_call_live(const np_call *c);

#endif
