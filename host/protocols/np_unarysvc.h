/* hivemind's unary calls between daemons (framing: np_unary.h) as a host
 * module (np_module.h):
 *  - outgoing, as the host's remote-call hook (np_host_set_remote): a call
 *    opens a stream named after the handler (lazy multistream: the request
 *    follows the proposal, one round trip), writes one request, reads one
 *    response and finishes its side. [limits] call_timeout bounds the whole
 *    call, dial included; a response over max_message fails it with
 *    NP_ELIMIT, whatever the remote allows; a connection going down fails
 *    it with the connection's error. While it waits, the stream is marked
 *    for the swarm's liveness probe.
 *  - incoming, as the host's unary server (np_host_set_unary_server): each
 *    stream the swarm accepts for an NP_HANDLER_UNARY entry carries one
 *    request, dispatched with np_host_call_local as coming from the
 *    authenticated remote (the caller's stated target is ignored); the
 *    answer, or the error text, goes back and our side ends. A second
 *    request, or a frame over max_message + NP_UNARY_OVERHEAD, resets the
 *    stream. */
#ifndef NP_UNARYSVC_H
#define NP_UNARYSVC_H

#include "np_module.h"

#define NP_UNARY_OVERHEAD 2048 /* frame bytes around a unary payload */

extern const np_module np_unarysvc_module;

#endif
