// Capped exponential backoff with full jitter, bounded by the outage.

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initial] ms: the ceiling of the first delay (default 250)
 * @property {number} [cap] ms: no ceiling grows past this (default 30000)
 * @property {() => number} [random] uniform in [0, 1) (default Math.random)
 */

export const DEFAULT_INITIAL_MS = 250
export const DEFAULT_CAP_MS = 30_000

/**
 * Checks backoff options and fills in the defaults.
 *
 * @param {BackoffOptions} [options]
 * @returns {Required<BackoffOptions>}
 */
export function backoffOptions (options = {}) {
  const initial = options.initial ?? DEFAULT_INITIAL_MS
  const cap = options.cap ?? DEFAULT_CAP_MS
  if (!(Number.isFinite(initial) && initial > 0)) throw new TypeError(`backoff.initial must be a positive number of ms, not ${initial}`)
  if (!(Number.isFinite(cap) && cap >= initial)) throw new TypeError(`backoff.cap must be a number of ms >= backoff.initial, not ${cap}`)
  const random = options.random ?? Math.random
  if (typeof random !== 'function') throw new TypeError('backoff.random must be a function')
  return { initial, cap, random }
}

/**
 * The delay before retry number `attempt` (0 for the first retry after a failure):
 * uniform in [0, min(cap, initial * 2^attempt)). Given how long the server has been
 * unreachable (`outageMs`), the window is also at most that long (and at least
 * `initial`): attempts still thin out as the outage goes on, but a client whose early
 * draws were short, and so refused more often, does not wait several times the outage
 * once the server is back.
 *
 * @param {number} attempt
 * @param {Required<BackoffOptions>} options
 * @param {number} [outageMs] ms since the server was first found unreachable
 * @returns {number} whole ms
 */
export function backoffDelay (attempt, options, outageMs) {
  let ceiling = Math.min(options.cap, options.initial * 2 ** Math.min(attempt, 52))
  if (outageMs != null) ceiling = Math.min(ceiling, Math.max(options.initial, outageMs))
  return Math.floor(options.random() * ceiling)
}
