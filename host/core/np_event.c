#include "np_event.h"

#include <stdlib.h>

#include "np_err.h"
#include "np_list.h"
#include "np_log.h"

struct np_event_sub {
  np_list link;
  unsigned mask;
  np_event_fn fn;
  void *ud;
  int dead; /* unsubscribed while a dispatch ran: unlinked afterwards */
};

struct np_events {
  np_list subs;
  size_t live;
  int depth;     /* dispatches in progress (nested emits) */
  int have_dead; /* some sub waits for the outermost dispatch to end */
};

int np_events_new(np_events **pe) {
  np_events *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return NP_ENOMEM;
  np_list_init(&e->subs);
  *pe = e;
  return 0;
}

void np_events_del(np_events *e) {
  np_list *it, *tmp;
  if (e == NULL)
    return;
  np_list_for_each_safe(it, tmp, &e->subs) {
    free(np_list_entry(it, np_event_sub, link));
  }
  free(e);
}

int np_events_subscribe(np_events *e, unsigned mask, np_event_fn fn, void *ud,
                        np_event_sub **psub) {
  np_event_sub *s;
  if (fn == NULL || (mask & NP_EV_ALL) == 0)
    return NP_EINVAL;
  if ((s = calloc(1, sizeof(*s))) == NULL)
    return NP_ENOMEM;
  s->mask = mask;
  s->fn = fn;
  s->ud = ud;
  np_list_insert_tail(&e->subs, &s->link);
  e->live++;
  if (psub)
    *psub = s;
  return 0;
}

void np_events_unsubscribe(np_events *e, np_event_sub *s) {
  if (s == NULL || s->dead)
    return;
  e->live--;
  if (e->depth > 0) {
    /* A dispatch may be standing on this node: keep it linked. */
    s->dead = 1;
    e->have_dead = 1;
    return;
  }
  np_list_remove(&s->link);
  free(s);
}

static void sweep(np_events *e) {
  np_list *it, *tmp;
  e->have_dead = 0;
  np_list_for_each_safe(it, tmp, &e->subs) {
    np_event_sub *s = np_list_entry(it, np_event_sub, link);
    if (s->dead) {
      np_list_remove(&s->link);
      free(s);
    }
  }
}

void np_events_emit(np_events *e, const np_event *ev) {
  np_list *it, *last;
  if (e == NULL || np_list_empty(&e->subs))
    return;
  if (e->depth >= NP_EVENTS_DEPTH) {
    np_warn("event", "dropped type=%#x reason=\"emitted %d deep\"", ev->type,
            e->depth);
    return;
  }
  e->depth++;
  /* Nodes are only unlinked when no dispatch runs, so walking the list is
   * safe; ones appended meanwhile (after |last|) wait for the next event. */
  last = e->subs.prev;
  for (it = e->subs.next; it != &e->subs; it = it->next) {
    np_event_sub *s = np_list_entry(it, np_event_sub, link);
    if (!s->dead && (s->mask & ev->type))
      s->fn(ev, s->ud);
    if (it == last)
      break;
  }
  if (--e->depth == 0 && e->have_dead)
    sweep(e);
}

size_t np_events_count(const np_events *e) { return e->live; }
