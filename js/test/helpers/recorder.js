// Records a target's events so a test can wait for one that may already have fired.

export const SERVICE_EVENTS = ['peer', 'peer:gone', 'register', 'unregister', 'server:connected', 'server:lost', 'error']

/**
 * Records every event of the given types dispatched on `target`, and waits for one.
 */
export class Recorder {
  /**
   * @param {EventTarget} target
   * @param {string[]} types
   */
  constructor (target, types) {
    /** @type {Array<{ type: string, detail: any, at: number }>} */
    this.events = []
    /** @type {Array<{ test: (e: { type: string, detail: any }) => boolean, resolve: (e: any) => void }>} */
    this.waiting = []
    for (const type of types) {
      target.addEventListener(type, (evt) => {
        const e = { type, detail: /** @type {CustomEvent} */ (evt).detail, at: performance.now() }
        this.events.push(e)
        for (const w of [...this.waiting]) {
          if (w.test(e)) { this.waiting.splice(this.waiting.indexOf(w), 1); w.resolve(e) }
        }
      })
    }
  }

  /**
   * @param {string} type
   * @param {(detail: any) => boolean} [test]
   */
  all (type, test = () => true) {
    return this.events.filter((e) => e.type === type && test(e.detail))
  }

  /**
   * The first event of `type` passing `test` since `from` (an index into `events`), now
   * or later; rejects after `timeout` ms.
   *
   * @param {string} type
   * @param {(detail: any) => boolean} [test]
   * @param {{ timeout?: number, from?: number }} [options]
   */
  next (type, test = () => true, { timeout = 20_000, from = 0 } = {}) {
    const match = (/** @type {{ type: string, detail: any }} */ e) => e.type === type && test(e.detail)
    const found = this.events.slice(from).find(match)
    if (found) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const entry = {
        test: match,
        resolve: (/** @type {any} */ e) => { clearTimeout(timer); resolve(e) }
      }
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(entry), 1)
        reject(new Error(`no ${type} event within ${timeout} ms; saw: ${this.events.map((e) => e.type).join(', ')}`))
      }, timeout)
      this.waiting.push(entry)
    })
  }
}
