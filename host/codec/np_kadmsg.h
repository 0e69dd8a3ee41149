/* Kademlia DHT messages (/ipfs/kad/1.0.0, libp2p-wire.md §11), sans-I/O:
 * a message body in, a bounded plain struct out; a struct in, bytes out.
 *
 * Stream use: read with an np_lp_reader of max |limits.max_msg| and pass
 * each message body to np_kadmsg_decode; write with np_kadmsg_encode_lp. */
#ifndef NP_KADMSG_H
#define NP_KADMSG_H

#include <stddef.h>
#include <stdint.h>
#include "np_err.h"
#include "np_peerid.h"

#define NP_KADMSG_PROTOCOL "/ipfs/kad/1.0.0"
#define NP_KADMSG_MSG_MAX (64 * 1024) /* default largest body read */
#define NP_KADMSG_PEERS_MAX 40        /* default closer/provider peers kept */
#define NP_KADMSG_ADDRS_MAX 32        /* default addrs kept per peer */
#define NP_KADMSG_KEY_MAX 256         /* default longest key / record key */
#define NP_KADMSG_TIME_MAX 64         /* longest timeReceived kept */

typedef enum np_kadmsg_type {
  NP_KADMSG_PUT_VALUE = 0,
  NP_KADMSG_GET_VALUE = 1,
  NP_KADMSG_ADD_PROVIDER = 2,
  NP_KADMSG_GET_PROVIDERS = 3,
  NP_KADMSG_FIND_NODE = 4,
  NP_KADMSG_PING = 5 /* deprecated: np_kad sends it to check a full bucket */
} np_kadmsg_type;

typedef enum np_kadmsg_conn {
  NP_KADMSG_NOT_CONNECTED = 0,
  NP_KADMSG_CONNECTED = 1,
  NP_KADMSG_CAN_CONNECT = 2,
  NP_KADMSG_CANNOT_CONNECT = 3
} np_kadmsg_conn;

/* Caps applied by np_kadmsg_decode; np_kadmsg_limits_default fills the
 * NP_KADMSG_*_MAX values. */
typedef struct np_kadmsg_limits {
  size_t max_msg;   /* body bytes; larger bodies: NP_ELIMIT */
  size_t max_peers; /* per list; further peers are dropped */
  size_t max_addrs; /* per peer; further addrs are dropped */
  size_t max_key;   /* key and record key bytes; longer: NP_ELIMIT */
} np_kadmsg_limits;

void np_kadmsg_limits_default(np_kadmsg_limits *l);

/* A byte string: owned by a decoded message, borrowed when encoding. */
typedef struct np_kadmsg_blob {
  uint8_t *data;
  size_t len;
} np_kadmsg_blob;

typedef struct np_kadmsg_peer {
  np_peerid id;
  np_kadmsg_blob *addrs; /* valid binary multiaddrs */
  size_t naddrs;
  np_kadmsg_conn conn;
} np_kadmsg_peer;

typedef struct np_kadmsg_record {
  np_kadmsg_blob key;
  np_kadmsg_blob value;
  char *time_received; /* NULL when absent or unusable */
} np_kadmsg_record;

/* One message. From np_kadmsg_decode everything is owned (free with
 * np_kadmsg_free); for np_kadmsg_encode the caller's pointers are only
 * read. Absent bytes fields have len 0. */
typedef struct np_kadmsg {
  np_kadmsg_type type;
  int32_t cluster_level; /* unused by libp2p; kept for round trips */
  np_kadmsg_blob key;
  int has_record;
  np_kadmsg_record record;
  np_kadmsg_peer *closer;
  size_t ncloser;
  np_kadmsg_peer *providers;
  size_t nproviders;
} np_kadmsg;

void np_kadmsg_init(np_kadmsg *m);
/* Release what np_kadmsg_decode allocated; |m| is then empty again. */
void np_kadmsg_free(np_kadmsg *m);

/* Decode the body |buf| (|len| bytes) into |m| (overwritten, need not be
 * initialised) under |lim| (NULL: defaults). Peers whose ID
 * np_peerid_from_bytes refuses and addrs np_maddr_validate refuses are
 * dropped, as are those past the caps; a peer left without addrs is kept
 * (naddrs 0: the caller may know them). Returns 0 or
 *   NP_ELIMIT  |len| > max_msg (checked first), a key longer than max_key,
 *              or a message that would take more than 8 * max_msg + 64 KiB
 *              of memory to unpack (thousands of empty entries)
 *   NP_EPROTO  not a Message, or an unknown message type
 *   NP_ENOMEM
 * On error |m| is left empty (nothing to free). */
int np_kadmsg_decode(np_kadmsg *m, const uint8_t *buf, size_t len,
                     const np_kadmsg_limits *lim);

/* Encode |m| into |out| (|cap| bytes); peer IDs and addrs are sent as
 * given (np_peerid values are valid by construction). Returns the body
 * length, NP_ELIMIT if it does not fit, NP_EINVAL for a type or connection
 * outside its enum or an empty peer ID, or NP_ENOMEM. */
np_ssize np_kadmsg_encode(const np_kadmsg *m, uint8_t *out, size_t cap);

/* As np_kadmsg_encode, with the uvarint length prefix in front; |cap| must
 * leave NP_VARINT_MAX bytes beyond the body for the prefix. */
np_ssize np_kadmsg_encode_lp(const np_kadmsg *m, uint8_t *out, size_t cap);

#endif
