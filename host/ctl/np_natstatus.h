/* What `natpeer-cli nat` shows: the host's NAT picture gathered from the
 * modules that know it (observed addresses, AutoNAT, the relay client and
 * service, DCUtR) into one np.ctl.NpNat message. A module that is not
 * running contributes nothing. Loop thread only. */
#ifndef NP_NATSTATUS_H
#define NP_NATSTATUS_H

#include "proto/natpeer_ctl.pb-c.h"
#include "np_host.h"

/* Fill |out| (initialised here); what it points to lives in |*arena|
 * until np_natstatus_free. Returns 0 or NP_ENOMEM. */
typedef struct np_natstatus np_natstatus;
int np_natstatus_build(np_host *h, Np__Ctl__NpNat *out, np_natstatus **arena);
void np_natstatus_free(np_natstatus *arena);

#endif
