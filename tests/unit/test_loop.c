/* np_loop: deferred work runs on a later turn, once per post, never after
 * np_loop_cancel, even while a socket is readable on every turn (an
 * ev_idle-driven queue starves then), and np_loop_del runs what is left. */
#include <fcntl.h>
#include <unistd.h>

#include "np_loop.h"
#include "tap.h"

static int runs;
static void count(void *arg) { (void)arg, runs++; }

static void busy(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev, (void)w, (void)revents; /* never drains: readable forever */
}

int main(void) {
  struct ev_loop *ev = ev_loop_new(EVFLAG_AUTO);
  np_loop *l;
  np_defer a, b;
  int p[2];
  ev_io io;
  ok(np_loop_new(&l, ev) == 0, "loop created");
  ev_run(ev, 0);
  ok(1, "ev_run returns at once when nothing but the loop glue is active");

  np_defer_init(&a, count, NULL);
  np_loop_post(l, &a);
  is_int(runs, 0, "posting runs nothing now");
  np_loop_post(l, &a);
  is_int(np_loop_pending(l), 1, "posting a queued node again keeps one entry");
  ev_run(ev, EVRUN_NOWAIT);
  is_int(runs, 1, "it runs on the next turn, once");

  np_defer_init(&b, count, NULL);
  np_loop_post(l, &b);
  np_loop_cancel(l, &b);
  ev_run(ev, EVRUN_NOWAIT);
  is_int(runs, 1, "a canceled node does not run");
  ok(!np_defer_queued(&b) && np_loop_pending(l) == 0, "and is off the queue");

  /* A socket that is readable on every turn must not starve the queue. */
  if (pipe(p) != 0 || write(p[1], "x", 1) != 1)
    ok(0, "pipe");
  ev_io_init(&io, busy, p[0], EV_READ);
  ev_io_start(ev, &io);
  np_loop_post(l, &a);
  for (int i = 0; i < 3 && runs == 1; i++)
    ev_run(ev, EVRUN_ONCE);
  is_int(runs, 2, "deferred work runs while a socket is busy on every turn");
  ev_io_stop(ev, &io);
  close(p[0]);
  close(p[1]);

  np_loop_post(l, &a);
  np_loop_post(l, &b);
  np_loop_del(l);
  is_int(runs, 4, "np_loop_del runs what is still queued");
  ev_loop_destroy(ev);
  return done_testing();
}
