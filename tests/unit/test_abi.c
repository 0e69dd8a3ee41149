/* The plugin ABI promise, checked: every member of every frozen header
 * (tests/plugins/abi_1_N) keeps its offset and size in sdk/natpeer/plugin.h,
 * structs only grow, the member lists below name every member of the
 * current structs, and a layout that grew past the newest frozen copy says
 * so with a higher NP_ABI_MINOR. */
#include "natpeer/plugin.h"
#include "abi_layout.h"
#include <string.h>

#include "tap.h"

/* The current header: the newest lists (extend them when appending). */
#define NP_API_CUR NP_API_1_3
#define NP_DESC_CUR NP_DESC_1_1
#define NP_CBS_CUR NP_CBS_1_1
NP_ABI_LAYOUT(cur, NP_API_CUR, NP_DESC_CUR, NP_CBS_CUR);

static const np_abi_field *find(const np_abi_struct *s, const char *name) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->f[i].name, name) == 0)
      return &s->f[i];
  return NULL;
}

static void same_prefix(const char *what, const char *ver,
                        const np_abi_struct *old, const np_abi_struct *now) {
  size_t bad = 0;
  for (size_t i = 0; i < old->n; i++) {
    const np_abi_field *f = find(now, old->f[i].name);
    if (f == NULL || f->off != old->f[i].off || f->size != old->f[i].size) {
      printf("# %s.%s: ABI %s has offset %zu size %zu, now %s\n", what,
             old->f[i].name, ver, old->f[i].off, old->f[i].size,
             f ? "moved or resized" : "missing");
      bad++;
    }
  }
  ok(bad == 0 && now->size >= old->size,
     "%s: the %zu members of ABI %s keep their offsets and sizes", what,
     old->n, ver);
}

/* The list reaches the end of the struct (only padding after it). */
static void covers(const char *what, const np_abi_struct *s) {
  const np_abi_field *last = &s->f[s->n - 1];
  size_t end = last->off + last->size;
  ok(end <= s->size && s->size - end < sizeof(void *),
     "%s: the member list names every member (ends at %zu of %zu)", what,
     end, s->size);
}

static int same_layout(const np_abi_layout *a, const np_abi_layout *b) {
  return a->api.size == b->api.size && a->desc.size == b->desc.size &&
         a->cbs.size == b->cbs.size;
}

int main(void) {
  static const struct {
    const char *ver;
    const np_abi_layout *l;
  } frozen[] = {{"1.0", &np_abi_frozen_1_0},
                {"1.1", &np_abi_frozen_1_1},
                {"1.2", &np_abi_frozen_1_2},
                {"1.3", &np_abi_frozen_1_3}};
  const size_t nf = sizeof(frozen) / sizeof(frozen[0]);
  const np_abi_layout *newest = frozen[nf - 1].l;
  for (size_t i = 0; i < nf; i++) {
    const np_abi_layout *l = frozen[i].l;
    is_int(l->major, NP_ABI_MAJOR, "ABI %s has the current major",
           frozen[i].ver);
    same_prefix("np_host_api", frozen[i].ver, &l->api, &cur.api);
    same_prefix("np_plugin_desc", frozen[i].ver, &l->desc, &cur.desc);
    same_prefix("np_stream_cbs", frozen[i].ver, &l->cbs, &cur.cbs);
    if (i > 0)
      ok(l->minor > frozen[i - 1].l->minor && !same_layout(l, frozen[i - 1].l),
         "ABI %s: a new minor, and a layout of its own", frozen[i].ver);
  }
  {
    /* What a plugin built now sees on a 1.2 host, and on this one. */
    np_host_api t;
    memset(&t, 0, sizeof(t));
    t.struct_size = np_abi_frozen_1_2.api.size;
    ok(NP_HAS(&t, stream_reset) && !NP_HAS(&t, dht_find_peer) &&
           !NP_HAS(&t, dht_cancel),
       "on an ABI 1.2 host's table, NP_HAS finds stream_reset and no DHT "
       "entry");
    t.struct_size = sizeof(np_host_api);
    ok(NP_HAS(&t, dht_find_peer) && NP_HAS(&t, dht_cancel),
       "on the current table, NP_HAS finds the DHT entries");
  }
  covers("np_host_api", &cur.api);
  covers("np_plugin_desc", &cur.desc);
  covers("np_stream_cbs", &cur.cbs);
  if (same_layout(&cur, newest))
    is_int(NP_ABI_MINOR, newest->minor,
           "the current layout is ABI 1.%u's, and says so", newest->minor);
  else
    ok(NP_ABI_MINOR > newest->minor,
       "the current layout grew past ABI 1.%u: NP_ABI_MINOR (%d) is bumped "
       "(and a frozen copy belongs in tests/plugins)",
       newest->minor, NP_ABI_MINOR);
  return done_testing();
}
