// The p2pd control protocol and hivemind unary-call messages, read at run time
// from the project's schema, host/proto/p2pd.proto (one source of truth; the
// env NP_P2PD_PROTO points elsewhere). Messages are found by name, their fields
// by NUMBER: the field numbers are the wire contract
// (shared/specs/p2pd-control.md §1.2, §2.2), so the .proto may name fields in
// any style (callId or call_id) without breaking these tests.
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import protobuf from 'protobufjs'

const HERE = dirname(fileURLToPath(import.meta.url))
export const PROTO_PATH = resolve(process.env.NP_P2PD_PROTO ?? join(HERE, '..', '..', 'host', 'proto', 'p2pd.proto'))

if (!existsSync(PROTO_PATH)) throw new Error(`p2pd schema not found: ${PROTO_PATH} (set NP_P2PD_PROTO)`)
const root = protobuf.loadSync(PROTO_PATH, new protobuf.Root(), { keepCase: true })
root.resolveAll()
export const schemaSource = PROTO_PATH

function findType (name) {
  const stack = [root]
  while (stack.length > 0) {
    const ns = stack.pop()
    for (const obj of ns.nestedArray ?? []) {
      if (obj instanceof protobuf.Type && obj.name === name) return obj
      if (obj.nestedArray != null) stack.push(obj)
    }
  }
  throw new Error(`p2pd schema ${schemaSource}: no message named ${name}`)
}

// A message type seen through field numbers: make({1: x, 3: {...}}) and
// read(bytes) -> {1: x, 3: {...}} (only fields present on the wire). Nested
// messages are given and returned the same way.
class ByNumber {
  constructor (type) { this.type = type }
  field (id) {
    const f = this.type.fieldsById[id]
    if (f == null) throw new Error(`p2pd schema ${schemaSource}: ${this.type.name} has no field ${id}`)
    return f
  }

  toObject (byNum) {
    const o = {}
    for (const [id, v] of Object.entries(byNum)) {
      if (v === undefined) continue
      const f = this.field(Number(id))
      const sub = f.resolvedType instanceof protobuf.Type ? new ByNumber(f.resolvedType) : null
      o[f.name] = sub == null ? v : f.repeated ? v.map(x => sub.toObject(x)) : sub.toObject(v)
    }
    return o
  }

  encode (byNum) {
    return this.type.encode(this.type.fromObject(this.toObject(byNum))).finish()
  }

  fromMessage (msg) {
    const out = {}
    for (const f of this.type.fieldsArray) {
      if (!Object.prototype.hasOwnProperty.call(msg, f.name)) continue
      const v = msg[f.name]
      if (f.repeated && v.length === 0) continue
      const sub = f.resolvedType instanceof protobuf.Type ? new ByNumber(f.resolvedType) : null
      if (f.resolvedType instanceof protobuf.Enum || typeof v === 'object' && v != null && typeof v.toNumber === 'function') {
        out[f.id] = Number(v) // enums as numbers, int64 (Long) as numbers
      } else {
        out[f.id] = sub == null ? v : f.repeated ? v.map(x => sub.fromMessage(x)) : sub.fromMessage(v)
      }
    }
    return out
  }

  // proto2 `required` is checked by protobufjs on decode; a peer that leaves
  // one out is reported, not silently accepted.
  decode (bytes) {
    return this.fromMessage(this.type.decode(bytes))
  }
}

export const PB = {
  Request: new ByNumber(findType('Request')),
  Response: new ByNumber(findType('Response')),
  StreamInfo: new ByNumber(findType('StreamInfo')),
  PersistentConnectionRequest: new ByNumber(findType('PersistentConnectionRequest')),
  PersistentConnectionResponse: new ByNumber(findType('PersistentConnectionResponse'))
}

// Request.Type / Response.Type values (wire numbers; p2pd-control.md §1.2)
export const REQ = { IDENTIFY: 0, CONNECT: 1, STREAM_OPEN: 2, STREAM_HANDLER: 3, LIST_PEERS: 5, DISCONNECT: 7, PERSISTENT_CONN_UPGRADE: 9 }
export const RESP = { OK: 0, ERROR: 1 }

// --- unary call between peers (p2pd-control.md §2.3) ----------------------
// caller -> callee: PersistentConnectionRequest{1 callId, 3 callUnary{1 peer, 2 proto, 3 data}}
// callee -> caller: PersistentConnectionRequest{1 callId, 4 unaryResponse{1 response | 2 error}}
export function encodeUnaryCall ({ callId, peer, proto, data }) {
  return PB.PersistentConnectionRequest.encode({ 1: callId, 3: { 1: peer, 2: proto, 3: data } })
}
export function encodeUnaryResponse ({ callId, response, error }) {
  const result = error != null ? { 2: error } : { 1: response ?? new Uint8Array(0) }
  return PB.PersistentConnectionRequest.encode({ 1: callId, 4: result })
}
// -> { callId, call?: {peer, proto, data}, response?: Uint8Array, error?: Uint8Array }
export function decodeUnary (bytes) {
  const m = PB.PersistentConnectionRequest.decode(bytes)
  const out = { callId: m[1] }
  if (m[3] != null) out.call = { peer: m[3][1], proto: m[3][2], data: m[3][3] ?? new Uint8Array(0) }
  if (m[4] != null) {
    if (m[4][2] != null) out.error = m[4][2]
    else out.response = m[4][1] ?? new Uint8Array(0)
  }
  return out
}
