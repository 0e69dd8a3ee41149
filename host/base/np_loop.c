#include "np_loop.h"

#include <stdlib.h>

#include "np_err.h"

struct np_loop {
  struct ev_loop *ev;
  ev_check check; /* runs the queue after every poll */
  ev_idle idle;   /* no-op: while work is queued, the poll must not block */
  np_list queue;
  unsigned pending;
};

static void run_queue(struct ev_loop *ev, ev_check *w, int revents) {
  np_loop *l = np_container_of(w, np_loop, check);
  np_list batch;
  (void)revents;
  if (np_list_empty(&l->queue)) {
    ev_idle_stop(ev, &l->idle);
    return;
  }
  /* Take the current batch only: work posted while running goes to the
   * next turn, so a callback that re-posts cannot starve I/O. */
  batch.next = l->queue.next;
  batch.prev = l->queue.prev;
  batch.next->prev = &batch;
  batch.prev->next = &batch;
  np_list_init(&l->queue);
  while (!np_list_empty(&batch)) {
    np_defer *d = np_list_entry(batch.next, np_defer, link);
    np_list_remove(&d->link);
    np_list_init(&d->link);
    d->queued = 0;
    l->pending--;
    d->fn(d->arg); /* may free the owner, and |d| with it */
  }
  if (np_list_empty(&l->queue))
    ev_idle_stop(ev, &l->idle);
}

static void idle_noop(struct ev_loop *ev, ev_idle *w, int revents) {
  (void)ev, (void)w, (void)revents;
}

int np_loop_new(np_loop **pl, struct ev_loop *ev) {
  np_loop *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return NP_ENOMEM;
  l->ev = ev;
  np_list_init(&l->queue);
  ev_check_init(&l->check, run_queue);
  ev_idle_init(&l->idle, idle_noop);
  ev_check_start(ev, &l->check);
  ev_unref(ev); /* the check watcher alone must not keep ev_run going */
  *pl = l;
  return 0;
}

void np_loop_del(np_loop *l) {
  if (l == NULL)
    return;
  ev_ref(l->ev);
  ev_check_stop(l->ev, &l->check);
  ev_idle_stop(l->ev, &l->idle);
  while (!np_list_empty(&l->queue)) {
    np_defer *d = np_list_entry(l->queue.next, np_defer, link);
    np_list_remove(&d->link);
    np_list_init(&d->link);
    d->queued = 0;
    l->pending--;
    d->fn(d->arg);
  }
  free(l);
}

struct ev_loop *np_loop_ev(np_loop *l) { return l->ev; }

void np_defer_init(np_defer *d, np_defer_fn fn, void *arg) {
  np_list_init(&d->link);
  d->fn = fn;
  d->arg = arg;
  d->queued = 0;
}

void np_loop_post(np_loop *l, np_defer *d) {
  if (d->queued)
    return;
  d->queued = 1;
  np_list_insert_tail(&l->queue, &d->link);
  l->pending++;
  ev_idle_start(l->ev, &l->idle);
}

void np_loop_cancel(np_loop *l, np_defer *d) {
  if (!d->queued)
    return;
  np_list_remove(&d->link);
  np_list_init(&d->link);
  d->queued = 0;
  l->pending--;
}

unsigned np_loop_pending(const np_loop *l) { return l->pending; }

uint64_t np_now(const np_loop *l) {
  return (uint64_t)(ev_now(l->ev) * 1000.0);
}
