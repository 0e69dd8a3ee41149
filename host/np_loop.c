#include "np_loop.h"

#include <stdlib.h>

#include "np_err.h"

typedef struct defer_node {
  np_list link;
  np_defer_fn fn;
  void *arg;
} defer_node;

struct np_loop {
  struct ev_loop *ev;
  ev_idle idle; /* runs the queue once per turn when it is non-empty */
  np_list queue;
  unsigned pending;
};

static void run_queue(struct ev_loop *ev, ev_idle *w, int revents) {
  np_loop *l = np_container_of(w, np_loop, idle);
  np_list batch;
  (void)revents;
  /* Take the current batch only: work deferred while running goes to the
   * next turn, so a callback that re-defers cannot starve I/O. */
  np_list_init(&batch);
  if (!np_list_empty(&l->queue)) {
    batch.next = l->queue.next;
    batch.prev = l->queue.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    np_list_init(&l->queue);
  }
  while (!np_list_empty(&batch)) {
    defer_node *n = np_list_entry(batch.next, defer_node, link);
    np_list_remove(&n->link);
    l->pending--;
    n->fn(n->arg);
    free(n);
  }
  if (np_list_empty(&l->queue))
    ev_idle_stop(ev, w);
}

int np_loop_new(np_loop **pl, struct ev_loop *ev) {
  np_loop *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return NP_ENOMEM;
  l->ev = ev;
  np_list_init(&l->queue);
  ev_idle_init(&l->idle, run_queue);
  *pl = l;
  return 0;
}

void np_loop_del(np_loop *l) {
  if (l == NULL)
    return;
  ev_idle_stop(l->ev, &l->idle);
  while (!np_list_empty(&l->queue)) {
    defer_node *n = np_list_entry(l->queue.next, defer_node, link);
    np_list_remove(&n->link);
    n->fn(n->arg);
    free(n);
  }
  free(l);
}

struct ev_loop *np_loop_ev(np_loop *l) { return l->ev; }

int np_loop_defer(np_loop *l, np_defer_fn fn, void *arg) {
  defer_node *n = malloc(sizeof(*n));
  if (n == NULL)
    return NP_ENOMEM;
  n->fn = fn;
  n->arg = arg;
  np_list_insert_tail(&l->queue, &n->link);
  l->pending++;
  ev_idle_start(l->ev, &l->idle);
  return 0;
}

unsigned np_loop_pending(const np_loop *l) { return l->pending; }

uint64_t np_now(const np_loop *l) {
  return (uint64_t)(ev_now(l->ev) * 1000.0);
}
