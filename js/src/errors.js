// The typed error a daemon's refusal becomes (an `error` event, or a rejected discover()).

/** ERROR statuses of the live dialect (docs/protocol.rst). */
export const Status = Object.freeze({
  E_INVALID_NAMESPACE: 100,
  E_INVALID_SIGNED_PEER_RECORD: 101,
  E_NOT_AUTHORIZED: 200,
  E_INTERNAL_ERROR: 300,
  E_UNAVAILABLE: 400,
  INVALID_MESSAGE: 1001,
  INVALID_PEER: 1002,
  LIMIT_EXCEEDED: 1003
})

/** A refusal by the rendezvous daemon: an ERROR message of the live dialect. */
export class RendezvousError extends Error {
  /**
   * @param {number} status the ERROR status (see Status)
   * @param {string} text the daemon's explanation, for people
   * @param {{ namespace?: string, operation?: string, server?: string }} [context]
   *   what was refused: the namespace and operation ('register', 'unregister',
   *   'rendezvous', 'discover'), when known, and the daemon's address
   */
  constructor (status, text, context = {}) {
    const what = context.operation == null ? '' : ` ${context.operation}${context.namespace == null ? '' : ` in "${context.namespace}"`}`
    super(`rendezvous daemon refused${what}: ${text || 'no reason given'} (status ${status})`)
    this.name = 'RendezvousError'
    /** @type {number} */
    this.status = status
    /** @type {string} */
    this.text = text
    /** @type {string | undefined} */
    this.namespace = context.namespace
    /** @type {string | undefined} */
    this.operation = context.operation
    /** @type {string | undefined} */
    this.server = context.server
  }
}
