/* Intrusive doubly linked list (the node lives inside its owner). */
#ifndef NP_LIST_H
#define NP_LIST_H

#include <stddef.h>

typedef struct np_list {
  struct np_list *prev, *next;
} np_list;

static inline void np_list_init(np_list *h) { h->prev = h->next = h; }
static inline int np_list_empty(const np_list *h) { return h->next == h; }
static inline void np_list_insert_tail(np_list *h, np_list *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}
/* Unlink |n| and leave it self-linked, so removing twice is harmless. */
static inline void np_list_remove(np_list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

#define np_list_entry(ptr, type, member)                                       \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Safe against removal of the current node. */
#define np_list_for_each_safe(pos, tmp, head)                                  \
  for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);             \
       (pos) = (tmp), (tmp) = (pos)->next)

#endif
