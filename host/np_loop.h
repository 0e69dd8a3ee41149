/* libev glue: the loop, deferred work ("run this on the next loop turn,
 * never from inside the current call") and the clock. */
#ifndef NP_LOOP_H
#define NP_LOOP_H

#include <ev.h>
#include <stdint.h>

#include "np_list.h"

typedef struct np_loop np_loop;
typedef void (*np_defer_fn)(void *arg);

/* Wraps |ev| (not owned). Returns 0 or NP_ENOMEM. */
int np_loop_new(np_loop **pl, struct ev_loop *ev);
/* Runs every still-queued deferred function with |canceled|=1 semantics:
 * callers that need to free their arg register a cleanup via the same fn
 * (np_loop_del calls fn(arg) for each pending entry), then frees. */
void np_loop_del(np_loop *l);
struct ev_loop *np_loop_ev(np_loop *l);

/* Queue fn(arg) for the next loop turn. Returns 0 or NP_ENOMEM. */
int np_loop_defer(np_loop *l, np_defer_fn fn, void *arg);
/* Number of queued deferred calls (tests). */
unsigned np_loop_pending(const np_loop *l);

/* Milliseconds of the loop's monotonic clock (cached per iteration). */
uint64_t np_now(const np_loop *l);

#endif
