/* libev glue: the loop, deferred work ("run this on the next loop turn,
 * never from inside the current call") and the clock.
 *
 * Deferred work lives in an np_defer node embedded in its owner: posting
 * cannot fail (no allocation, so no "run it now" fallback that would call
 * back into the caller's stack), a node is queued at most once, and an owner
 * that goes away first takes its node off the queue with np_loop_cancel.
 * The queue runs from an ev_check watcher, i.e. on every loop iteration
 * right after polling, however busy the sockets are (an ev_idle watcher
 * would starve under load); a no-op ev_idle only keeps the poll from
 * blocking while work is queued. */
#ifndef NP_LOOP_H
#define NP_LOOP_H

#include <ev.h>
#include <stdint.h>

#include "np_list.h"

typedef struct np_loop np_loop;
typedef void (*np_defer_fn)(void *arg);

typedef struct np_defer {
  np_list link; /* in the loop's queue while queued */
  np_defer_fn fn;
  void *arg;
  int queued;
} np_defer;

/* Wraps |ev| (not owned). Returns 0 or NP_ENOMEM. */
int np_loop_new(np_loop **pl, struct ev_loop *ev);
/* Runs every still-queued node's fn (owners free themselves there), then
 * frees the loop. */
void np_loop_del(np_loop *l);
struct ev_loop *np_loop_ev(np_loop *l);

/* Set up |d| (embedded in its owner) to run fn(arg). */
void np_defer_init(np_defer *d, np_defer_fn fn, void *arg);
/* Queue |d| for the next loop turn; a no-op when it is queued already.
 * Work posted while the queue runs waits for the next turn. */
void np_loop_post(np_loop *l, np_defer *d);
/* Take |d| off the queue (a no-op when it is not queued). */
void np_loop_cancel(np_loop *l, np_defer *d);
static inline int np_defer_queued(const np_defer *d) { return d->queued; }
/* Number of queued nodes (tests). */
unsigned np_loop_pending(const np_loop *l);

/* Milliseconds of the loop's monotonic clock (cached per iteration). */
uint64_t np_now(const np_loop *l);

#endif
