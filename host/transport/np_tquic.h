/* QUIC as an np_transport: wraps np_quic's endpoint, connections and
 * streams in the np_conn interface (np_conn.h). np_quic keeps the wire and
 * its own contract; this file only translates. */
#ifndef NP_TQUIC_H
#define NP_TQUIC_H

#include "np_conn.h"
#include "np_loop.h"
#include "np_quic.h"
#include "np_tls.h"

/* Create the QUIC transport on |loop| presenting |tls|'s certificate (not
 * owned; must outlive it). |cfg| may be NULL. Events go to |cbs| with
 * |ud|. Returns 0, NP_EINVAL or NP_ENOMEM. Free with t->ops->del. */
int np_tquic_new(np_transport **pt, np_loop *loop, np_tls *tls,
                 const np_quic_config *cfg, const np_conn_cbs *cbs, void *ud);

/* The np_quic endpoint underneath (raw UDP from the listen socket for hole
 * punching later; tests). */
np_quic *np_tquic_quic(np_transport *t);

#endif
