/* Configuration: natpeer.ini parsed through inih into a fresh np_conf,
 * validated as a whole before anything is bound or written. Errors have one
 * shape: "FILE:LINE: [section] key: what is wrong (expected ...)". */
#ifndef NP_CONF_H
#define NP_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "np_event.h"

typedef struct np_strv {
  char **v;
  size_t n;
} np_strv;

/* Free the strings and array of |s| and leave it empty. */
void np_strv_free(np_strv *s);

typedef struct np_conf_kv {
  char *key;
  char *value;
  int line;
} np_conf_kv;

/* A [plugin.NAME] section: free keys handed to that plugin. */
typedef struct np_conf_plugin {
  char *name;
  np_conf_kv *kv;
  size_t n;
} np_conf_plugin;

enum np_dht_mode { NP_DHT_AUTO, NP_DHT_SERVER, NP_DHT_CLIENT, NP_DHT_OFF };
/* [nat] reachability: auto (AutoNAT decides), or forced to NP_REACH_PUBLIC
 * / NP_REACH_PRIVATE (np_event.h's values). */
enum np_reach { NP_REACH_AUTO = 0 };
enum np_tristate { NP_TRI_AUTO, NP_TRI_ON, NP_TRI_OFF };
/* [host] security entries (the values of np_upgrade's NP_UPGRADE_*). */
enum { NP_CONF_SEC_NOISE = 1, NP_CONF_SEC_TLS = 2 };

typedef struct np_conf {
  char *path; /* NULL for built-in defaults */
  struct {
    char *identity_file;
    np_strv listen;
    np_strv announce;
    char *control;
    char *control_group;
    int control_allow_remote;
    char *data_dir;
    int log_level;
    int log_timestamps;
    int security; /* NP_CONF_SEC_* in preference order, one per byte from
                     the lowest ("noise tls": NOISE | TLS << 8) */
  } host;
  struct {
    np_strv peers;
    uint64_t connect_timeout_ms;
  } bootstrap;
  struct {
    int mode; /* enum np_dht_mode */
    char *protocol;
    uint32_t bucket_size;
    uint32_t alpha;
    uint64_t record_ttl_ms;
    uint64_t refresh_interval_ms;
  } dht;
  struct {
    int reachability; /* enum np_reach */
    int autonat;
    int autonat_service;
    uint64_t autonat_interval_ms;
    uint64_t autonat_boot_delay_ms; /* first probe after start */
    uint32_t autonat_peer_limit;    /* dial-back requests/peer/minute */
    uint32_t autonat_global_limit;  /* dial-back requests/minute in all */
    int hole_punch;
    uint32_t hole_punch_attempts;
    uint64_t hole_punch_timeout_ms;
    uint64_t keepalive_ms; /* QUIC keep-alive PING: holds NAT mappings */
    np_strv treat_as_public; /* prefixes counted as public (labs) */
  } nat;
  struct {
    int service; /* enum np_tristate */
    int client;  /* enum np_tristate */
    np_strv relays;
    uint32_t client_reservations; /* relays the client reserves on */
    int accept_any_relay; /* circuits through any relay, not only ours */
    uint32_t max_reservations;
    uint32_t max_circuits;
    uint64_t reservation_ttl_ms;
    uint64_t circuit_duration_ms;
    uint64_t circuit_bytes;
    uint32_t max_reservations_per_ip; /* by the connection's remote IP */
    uint32_t reserve_rate;            /* RESERVE requests per peer a minute */
    uint32_t max_circuits_total;
    np_strv unlimited_peers; /* peer IDs: their circuits have no limits */
  } relay;
  struct {
    uint32_t max_connections;
    uint32_t max_streams_per_conn;
    uint32_t max_streams_per_protocol;
    uint64_t max_message;
    uint64_t idle_timeout_ms;
    uint64_t call_timeout_ms;
    uint32_t max_peers;
    uint32_t max_pending_calls;
    uint32_t max_control_clients;
    uint64_t control_idle_ms; /* a control client waiting for its request */
  } limits;
  struct {
    char *dir;
    int autoload;
    np_strv load;
    np_strv deny;
  } plugins;
  np_conf_plugin *psec;
  size_t n_psec;
  int *key_line; /* per key of the table: line that set it, 0 = default */
} np_conf;

/* What a key is: read only at start (a reload leaves the running value),
 * or for a feature this build does not have yet (accepted so that a config
 * written for a later version loads, but it does nothing). */
enum np_conf_key_flags { NP_KEY_RESTART = 1, NP_KEY_UNBUILT = 2 };
typedef void (*np_conf_key_fn)(const char *section, const char *name,
                               int line, void *ud);
/* |fn| for each key with |flag| that |c|'s file sets. */
void np_conf_foreach_set(const np_conf *c, unsigned flag, np_conf_key_fn fn,
                         void *ud);
/* |fn| for each key with |flag| whose value differs between |a| and |b|
 * (|line|: where |b| sets it, 0 if |b| leaves the default). */
void np_conf_foreach_changed(const np_conf *a, const np_conf *b,
                             unsigned flag, np_conf_key_fn fn, void *ud);
/* The flags of [section] name (0 for plugin sections and unknown keys). */
unsigned np_conf_key_flags(const char *section, const char *name);

/* np_conf_defaults fills |c| with the built-in defaults (documented in
 * etc/natpeer.ini). Returns 0 or NP_ENOMEM. */
int np_conf_defaults(np_conf *c);

/* np_conf_load parses |path| over the defaults into a new np_conf. On error
 * returns a negative code and, when |err| is non-NULL, writes one line
 * "FILE:LINE: [section] key: what is wrong (expected ...)" into it.
 * Relative paths in the file are resolved against the file's directory. */
int np_conf_load(np_conf **pc, const char *path, char *err, size_t errlen);
/* Same, from a string (tests, fuzzing); |name| stands for the file name. */
int np_conf_load_string(np_conf **pc, const char *name, const char *text,
                        size_t len, char *err, size_t errlen);
/* Built-in defaults only (no --config). */
int np_conf_new_default(np_conf **pc);
void np_conf_del(np_conf *c);

/* The [plugin.NAME] section of |name|, or NULL. */
const np_conf_plugin *np_conf_plugin_section(const np_conf *c,
                                             const char *name);
const char *np_conf_plugin_get(const np_conf_plugin *s, const char *key);

/* The line of |c|'s file that set [section] name, 0 if unset (or unknown). */
int np_conf_key_line(const np_conf *c, const char *section, const char *name);
/* Move into |dst| every key that |src|'s text set (|only_unset|: only those
 * |dst|'s own file left unset). |src| keeps what was not moved; free it
 * with np_conf_del. natpeer-p2pd layers its command line over -config. */
void np_conf_overlay(np_conf *dst, np_conf *src, int only_unset);

/* Documented key table, for the test that etc/natpeer.ini covers every key:
 * returns the i-th "section.key" name or NULL past the end. */
const char *np_conf_key_name(size_t i);

#endif
