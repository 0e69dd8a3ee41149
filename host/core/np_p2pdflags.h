/* natpeer-p2pd's command line: go-libp2p-daemon's flags (and hivemind's
 * fork's) in Go `flag` syntax, mapped onto natpeer's configuration. The
 * flags become INI text read by np_conf, so a flag value is checked exactly
 * as the same key in natpeer.ini would be. */
#ifndef NP_P2PDFLAGS_H
#define NP_P2PDFLAGS_H

#include <stdint.h>
#include <stdio.h>

#include "np_conf.h"

/* Go value syntax (strconv.ParseBool, ParseInt/ParseUint with base 0,
 * time.ParseDuration). Return 0, or NP_EINVAL (syntax) / NP_ELIMIT (out of range). */
int np_goflag_bool(const char *s, int *out);
int np_goflag_int(const char *s, int64_t *out);
int np_goflag_uint(const char *s, uint64_t *out);
int np_goflag_duration(const char *s, int64_t *ns);

typedef struct np_p2pd_opts {
  int quiet;               /* -q: no banner */
  int bootstrap;           /* -b: connect to [bootstrap] peers or exit */
  int64_t idle_timeout_ns; /* -idleTimeout; <= 0: none */
  char *config;            /* -config FILE (natpeer's INI) or NULL */
  char *id_file;           /* -id, absolute; NULL: a new identity per run */
  char *set_ini;  /* keys the given flags set: they override -config */
  char *mode_ini; /* p2pd-mode defaults: -config's own keys win */
} np_p2pd_opts;

enum np_p2pd_parse_rc { NP_P2PD_RUN = 0, NP_P2PD_EXIT_OK = 1, NP_P2PD_USAGE = 2 };

/* Parse |argv| (argv[0] excluded: |argc|/|argv| start at the first
 * argument) into |o|. Errors, usage and one-line notes about flags that
 * natpeer accepts but gives no meaning go to |err| as Go and p2pd print
 * them. Returns NP_P2PD_RUN, NP_P2PD_EXIT_OK (-h: usage printed) or
 * NP_P2PD_USAGE (exit status 2; message and usage printed). */
int np_p2pd_parse(np_p2pd_opts *o, const char *prog, int argc, char **argv,
                  FILE *err);
/* Build the configuration: defaults, -config FILE, p2pd-mode defaults for
 * the keys the file leaves unset, then the flags. 0 or a negative code with
 * one line in |errbuf|. */
int np_p2pd_conf(const np_p2pd_opts *o, np_conf **pc, char *errbuf,
                 size_t errlen);
void np_p2pd_opts_free(np_p2pd_opts *o);
void np_p2pd_usage(FILE *f, const char *prog);

#endif
