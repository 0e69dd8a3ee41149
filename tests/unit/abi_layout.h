/* The members of each SDK struct as each ABI version has them, and a
 * layout record (offset and size of every member) that one translation
 * unit per header version fills in: abi_frozen_1_N.c for the frozen copies
 * in tests/plugins/abi_1_N, test_abi.c for sdk/natpeer/plugin.h. Include
 * after the header whose layout is recorded. */
#ifndef NP_TEST_ABI_LAYOUT_H
#define NP_TEST_ABI_LAYOUT_H

#include <stddef.h>

#define NP_API_1_0(X)                                                          \
  X(struct_size) X(abi_major) X(abi_minor) X(strerror) X(log) X(conf_get)      \
  X(register_unary) X(register_stream) X(call_peer) X(call_reply)             \
  X(stream_write) X(stream_close) X(timer_start) X(timer_stop)
#define NP_API_1_1(X)                                                          \
  NP_API_1_0(X) X(call_fail) X(call) X(self_peer) X(stream_peer)              \
  X(call_on_cancel) X(open_stream) X(stream_set_ud)
#define NP_API_1_2(X) NP_API_1_1(X) X(stream_pause) X(stream_reset)
#define NP_API_1_3(X)                                                          \
  NP_API_1_2(X) X(dht_find_peer) X(dht_get_value) X(dht_put_value)            \
  X(dht_provide) X(dht_find_providers) X(dht_cancel)
#define NP_DESC_1_0(X)                                                         \
  X(struct_size) X(abi_major) X(abi_minor) X(name) X(version) X(init)          \
  X(shutdown)
#define NP_DESC_1_1(X) NP_DESC_1_0(X) X(description)
#define NP_CBS_1_0(X) X(struct_size) X(on_open) X(on_data) X(on_close)
#define NP_CBS_1_1(X) NP_CBS_1_0(X) X(on_writable)

typedef struct np_abi_field {
  const char *name;
  size_t off, size;
} np_abi_field;

typedef struct np_abi_struct {
  const np_abi_field *f;
  size_t n, size; /* members listed, sizeof the struct */
} np_abi_struct;

typedef struct np_abi_layout {
  unsigned major, minor; /* NP_ABI_MAJOR/MINOR of that header */
  np_abi_struct api, desc, cbs;
} np_abi_layout;

#define NP_ABI_F_(T, m) {#m, offsetof(T, m), sizeof(((T *)0)->m)},
#define NP_ABI_API_(m) NP_ABI_F_(np_host_api, m)
#define NP_ABI_DESC_(m) NP_ABI_F_(np_plugin_desc, m)
#define NP_ABI_CBS_(m) NP_ABI_F_(np_stream_cbs, m)

/* Defines |NAME|, the layout of the included header, from member lists. */
#define NP_ABI_LAYOUT(NAME, API, DESC, CBS)                                    \
  static const np_abi_field NAME##_api[] = {API(NP_ABI_API_)};                 \
  static const np_abi_field NAME##_desc[] = {DESC(NP_ABI_DESC_)};              \
  static const np_abi_field NAME##_cbs[] = {CBS(NP_ABI_CBS_)};                 \
  const np_abi_layout NAME = {                                                 \
      NP_ABI_MAJOR,                                                            \
      NP_ABI_MINOR,                                                            \
      {NAME##_api, sizeof(NAME##_api) / sizeof(NAME##_api[0]),                 \
       sizeof(np_host_api)},                                                   \
      {NAME##_desc, sizeof(NAME##_desc) / sizeof(NAME##_desc[0]),              \
       sizeof(np_plugin_desc)},                                                \
      {NAME##_cbs, sizeof(NAME##_cbs) / sizeof(NAME##_cbs[0]),                 \
       sizeof(np_stream_cbs)}}

extern const np_abi_layout np_abi_frozen_1_0, np_abi_frozen_1_1,
    np_abi_frozen_1_2, np_abi_frozen_1_3;

#endif
