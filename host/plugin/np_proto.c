#include "np_proto.h"

#include <stdlib.h>
#include <string.h>

#include "np_err.h"

#define NBUCKETS 256

struct np_proto_table {
  np_handler *b[NBUCKETS];
  size_t n;
  uint32_t max;
  void (*notify)(void *ud);
  void *notify_ud;
};

void np_proto_table_set_notify(np_proto_table *t, void (*fn)(void *ud),
                               void *ud) {
  t->notify = fn;
  t->notify_ud = ud;
}

static void changed(np_proto_table *t) {
  if (t->notify)
    t->notify(t->notify_ud);
}

static uint32_t hash(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

int np_proto_table_new(np_proto_table **pt, uint32_t max_entries) {
  np_proto_table *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NP_ENOMEM;
  t->max = max_entries ? max_entries : 4096;
  *pt = t;
  return 0;
}

void np_proto_table_del(np_proto_table *t) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < NBUCKETS; i++) {
    np_handler *h = t->b[i], *n;
    for (; h; h = n) {
      n = h->next;
      free(h->proto);
      free(h);
    }
  }
  free(t);
}

int np_proto_name_check(const char *name, size_t len) {
  if (name == NULL || len == 0 || len > NP_PROTO_NAME_MAX)
    return NP_EINVAL;
  for (size_t i = 0; i < len; i++)
    if (name[i] == '\0' || name[i] == '\n')
      return NP_EINVAL;
  return 0;
}

const np_handler *np_proto_find(const np_proto_table *t, const char *proto,
                                size_t len) {
  const np_handler *h = t->b[hash(proto, len) % NBUCKETS];
  for (; h; h = h->next)
    if (h->proto_len == len && memcmp(h->proto, proto, len) == 0)
      return h;
  return NULL;
}

int np_proto_add(np_proto_table *t, const np_handler *h,
                 const np_handler **taken) {
  size_t len = h->proto ? strlen(h->proto) : 0;
  const np_handler *cur;
  np_handler *n;
  uint32_t b;
  if (np_proto_name_check(h->proto, len) != 0)
    return NP_EINVAL;
  if ((cur = np_proto_find(t, h->proto, len)) != NULL) {
    if (taken)
      *taken = cur;
    return NP_EEXIST;
  }
  if (t->n >= t->max)
    return NP_ELIMIT;
  if ((n = malloc(sizeof(*n))) == NULL)
    return NP_ENOMEM;
  *n = *h;
  if ((n->proto = malloc(len + 1)) == NULL) {
    free(n);
    return NP_ENOMEM;
  }
  memcpy(n->proto, h->proto, len + 1);
  n->proto_len = len;
  b = hash(n->proto, len) % NBUCKETS;
  n->next = t->b[b];
  t->b[b] = n;
  t->n++;
  changed(t);
  return 0;
}

int np_proto_remove(np_proto_table *t, const char *proto, const void *owner) {
  size_t len = strlen(proto);
  np_handler **pp = &t->b[hash(proto, len) % NBUCKETS];
  for (; *pp; pp = &(*pp)->next) {
    np_handler *h = *pp;
    if (h->proto_len == len && memcmp(h->proto, proto, len) == 0) {
      if (h->owner != owner)
        return NP_ENOENT;
      *pp = h->next;
      free(h->proto);
      free(h);
      t->n--;
      changed(t);
      return 0;
    }
  }
  return NP_ENOENT;
}

size_t np_proto_remove_owner(np_proto_table *t, const void *owner) {
  size_t removed = 0;
  for (size_t i = 0; i < NBUCKETS; i++) {
    np_handler **pp = &t->b[i];
    while (*pp) {
      np_handler *h = *pp;
      if (h->owner == owner) {
        *pp = h->next;
        free(h->proto);
        free(h);
        t->n--;
        removed++;
      } else {
        pp = &h->next;
      }
    }
  }
  if (removed)
    changed(t);
  return removed;
}

size_t np_proto_count(const np_proto_table *t) { return t->n; }

void np_proto_foreach(const np_proto_table *t,
                      int (*fn)(const np_handler *h, void *ud), void *ud) {
  for (size_t i = 0; i < NBUCKETS; i++)
    for (const np_handler *h = t->b[i]; h; h = h->next)
      if (fn(h, ud))
        return;
}
