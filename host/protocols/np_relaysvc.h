/* Circuit relay v2 service (libp2p-wire.md §13): the hop protocol
 * /libp2p/circuit/relay/0.2.0/hop for peers that cannot be reached
 * directly. A peer RESERVEs a slot (tied to its connections to us); a
 * source then CONNECTs to it: we open the stop protocol to the target on
 * its existing connection and pipe bytes both ways, with back-pressure,
 * within [relay] circuit_duration and circuit_bytes (per direction).
 *
 * [relay] service = on serves; auto serves while the host is public
 * (NP_EV_REACHABILITY, or [nat] reachability; before any verdict: when a
 * listen address is public); off never. The hop protocol is registered
 * only while serving, so identify advertises it only then; leaving the
 * service ends every reservation and circuit.
 *
 * Reservations: one per peer (a RESERVE renews it), refused over a limited
 * connection, ended with the peer's last connection or at
 * reservation_ttl; max_reservations, max_reservations_per_ip (the remote
 * IP of the reserving connection) and reserve_rate (RESERVE requests per
 * peer a minute) bound them. The answer lists our public addresses, or
 * when none is public every non-loopback one (a LAN or lab relay), with
 * /p2p/ our ID, a voucher and the circuit limits.
 *
 * Circuits: the target must hold a reservation and a direct connection to
 * us (never dialed); max_circuits per peer (as source or target) and
 * max_circuits_total; the target answers STOP within 30 s. Bytes either
 * side sends behind its message are forwarded. A receiver that does not
 * read pauses the other side (at most one transport delivery is held per
 * direction); a FIN is forwarded as a FIN, a reset as a reset. Past
 * circuit_duration or circuit_bytes in one direction both streams are
 * reset, unless an end is in unlimited_peers. The limits are read from the
 * running config at each request.
 *
 * Module "relaysvc" (np_host_module(h, "relaysvc") is an np_relaysvc).
 * Loop thread only. */
#ifndef NP_RELAYSVC_H
#define NP_RELAYSVC_H

#include <stddef.h>
#include <stdint.h>

#include "np_module.h"
#include "np_peerid.h"

typedef struct np_relaysvc np_relaysvc;

/* Counters for the CLI. A struct tag only: np_relaysvc_stats is also the
 * function that fills it. */
struct np_relaysvc_stats {
  size_t reservations;    /* held now (unexpired) */
  size_t circuits;        /* open now, including those waiting for STOP */
  uint64_t refused;       /* requests refused: RESERVE, CONNECT, malformed */
  uint64_t reservations_refused; /* RESERVE requests refused */
  uint64_t circuits_total; /* circuits that reached the piping stage */
  uint64_t bytes_relayed;  /* both directions, all circuits */
  uint64_t buffered;       /* bytes held now for slow receivers */
  int serving;             /* the hop protocol is registered */
};

void np_relaysvc_stats(np_relaysvc *r, struct np_relaysvc_stats *out);

/* Up to |max| reservations: the peer into out[i], its expiry (unix
 * seconds) into expire_s[i] (either array may be NULL). Returns how many
 * are held (may exceed |max|). */
size_t np_relaysvc_reservations(np_relaysvc *r, np_peerid *out,
                                uint64_t *expire_s, size_t max);

extern const np_module np_relaysvc_module;

#endif
