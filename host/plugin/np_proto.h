/* Protocol table: one name -> one handler, shared by plugins and control
 * clients, so a name registered by one cannot be taken by another. */
#ifndef NP_PROTO_H
#define NP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "natpeer/plugin.h"

#define NP_PROTO_NAME_MAX 1024
#define NP_PROTO_UNLIMITED UINT32_MAX

enum np_handler_kind { NP_HANDLER_UNARY = 1, NP_HANDLER_STREAM = 2 };
enum np_owner_kind { NP_OWNER_PLUGIN = 1, NP_OWNER_CTL = 2, NP_OWNER_HOST = 3 };

typedef struct np_handler {
  char *proto;
  size_t proto_len;
  int kind;       /* enum np_handler_kind */
  int owner_kind; /* enum np_owner_kind */
  void *owner;    /* np_plugin*, control client, ... */
  const char *owner_name; /* for "already registered by ..." messages */
  np_unary_cb unary;
  np_stream_cbs stream; /* converted to the current size */
  void *ud;
  struct np_list *pending; /* owner's list of calls in flight */
  struct np_list *streams; /* owner's list of open streams */
  /* Inbound streams of this protocol one connection may hold at once: 0
   * for [limits] max_streams_per_protocol, NP_PROTO_UNLIMITED for no cap
   * of its own (max_streams_per_conn still applies). */
  uint32_t max_streams;
  struct np_handler *next; /* hash chain */
} np_handler;

typedef struct np_proto_table np_proto_table;

int np_proto_table_new(np_proto_table **pt, uint32_t max_entries);
void np_proto_table_del(np_proto_table *t);

/* Validate a protocol name: 1..NP_PROTO_NAME_MAX bytes, no NUL or newline
 * (multistream-select frames end in '\n'). Returns 0 or NP_EINVAL. */
int np_proto_name_check(const char *name, size_t len);

/* Add a copy of |h| (proto copied). NP_EEXIST when taken; then *taken (if
 * not NULL) points at the current holder. NP_ELIMIT when the table is full. */
int np_proto_add(np_proto_table *t, const np_handler *h,
                 const np_handler **taken);
/* Remove |proto| if |owner| holds it. Returns 0 or NP_ENOENT. */
int np_proto_remove(np_proto_table *t, const char *proto, const void *owner);
/* Remove every entry of |owner|; returns how many. */
size_t np_proto_remove_owner(np_proto_table *t, const void *owner);
const np_handler *np_proto_find(const np_proto_table *t, const char *proto,
                                size_t len);
size_t np_proto_count(const np_proto_table *t);
/* |fn| runs after every add or remove (e.g. to announce the new list with
 * identify/push); NULL removes it. */
void np_proto_table_set_notify(np_proto_table *t, void (*fn)(void *ud),
                               void *ud);

/* Visit all entries (order unspecified); stop early if fn returns nonzero. */
void np_proto_foreach(const np_proto_table *t,
                      int (*fn)(const np_handler *h, void *ud), void *ud);

#endif
