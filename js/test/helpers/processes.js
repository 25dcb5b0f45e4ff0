// Real `twistd rendezvous` / `twistd rendezvous-relay` processes for the integration tests,
// started the way tests/processes.py starts them, awaited on their log lines (no sleeps).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
export const PYTHON = process.env.RENDEZVOUS_PYTHON || 'python3'
const TWISTD = [PYTHON, '-c', 'from twisted.scripts.twistd import run; run()']

/** @type {Set<import('node:child_process').ChildProcess>} every child still running */
const running = new Set()
// a test that times out may never reach its cleanup: no daemon outlives the test run
process.on('exit', () => { for (const child of running) child.kill('SIGKILL') })

export const TCP_LISTENING = /listening on (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/(\w+))\n/
export const WS_LISTENING = /listening on (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\/(\w+))\n/

/** A child process whose output can be awaited line by line. */
export class Process {
  /**
   * @param {string[]} args
   * @param {string} cwd
   */
  constructor (args, cwd) {
    this.args = args
    this.output = ''
    /** @type {Array<{ pattern: RegExp, resolve: (m: RegExpMatchArray) => void, reject: (e: Error) => void }>} */
    this.waiting = []
    const env = { ...process.env, PYTHONUNBUFFERED: '1' }
    env.PYTHONPATH = ROOT + (env.PYTHONPATH ? `:${env.PYTHONPATH}` : '')
    this.child = spawn(args[0], args.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    running.add(this.child)
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        running.delete(this.child)
        this.exitCode = code ?? signal
        for (const w of this.waiting.splice(0)) {
          w.reject(new Error(`${args.slice(3, 6).join(' ')} ended (${this.exitCode}) before ${w.pattern}:\n${this.output}`))
        }
        resolve(this.exitCode)
      })
    })
    this.child.on('error', (err) => {
      for (const w of this.waiting.splice(0)) w.reject(err)
    })
    for (const pipe of [this.child.stdout, this.child.stderr]) {
      pipe.setEncoding('utf8')
      pipe.on('data', (data) => { this.output += data; this.check() })
    }
  }

  check () {
    for (const w of [...this.waiting]) {
      const match = this.output.match(w.pattern)
      if (match) { this.waiting.splice(this.waiting.indexOf(w), 1); w.resolve(match) }
    }
  }

  /**
   * The first match of `pattern` in the output, now or later; rejects after `timeout` ms
   * or when the process ends first.
   *
   * @param {RegExp} pattern
   * @param {number} [timeout]
   * @returns {Promise<RegExpMatchArray>}
   */
  waitFor (pattern, timeout = 20_000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry)
        if (i >= 0) this.waiting.splice(i, 1)
        reject(new Error(`timed out waiting for ${pattern} in:\n${this.output}`))
      }, timeout)
      const entry = {
        pattern,
        resolve: (/** @type {RegExpMatchArray} */ m) => { clearTimeout(timer); resolve(m) },
        reject: (/** @type {Error} */ e) => { clearTimeout(timer); reject(e) }
      }
      this.waiting.push(entry)
      this.check()
      if (this.exitCode !== undefined) entry.reject(new Error(`process already ended:\n${this.output}`))
    })
  }

  /** @param {NodeJS.Signals} [signal] */
  async kill (signal = 'SIGKILL') {
    if (this.exitCode === undefined) this.child.kill(signal)
    return this.exited
  }
}

/**
 * Processes started by one test, killed (and their folder removed) by `stopAll()`.
 */
export class Processes {
  constructor () {
    this.cwd = mkdtempSync(join(tmpdir(), 'live-rendezvous-'))
    /** @type {Process[]} */
    this.all = []
  }

  /** @param {...string} args twistd arguments after `-n --pidfile=` */
  twistd (...args) {
    const p = new Process([...TWISTD, '-n', '--pidfile=', ...args], this.cwd)
    this.all.push(p)
    return p
  }

  /**
   * A daemon listening on libp2p TCP and WebSocket on 127.0.0.1.
   *
   * @returns {Promise<{ process: Process, tcp: string, ws: string, id: string }>}
   */
  async daemon (...extra) {
    const process = this.twistd('rendezvous', '--p2p-listen', '/ip4/127.0.0.1/tcp/0', '--p2p-listen', '/ip4/127.0.0.1/tcp/0/ws', ...extra)
    const [tcp, ws] = await Promise.all([process.waitFor(TCP_LISTENING), process.waitFor(WS_LISTENING)])
    return { process, tcp: tcp[1], ws: ws[1], id: tcp[2] }
  }

  /**
   * A relay announcing itself to the daemon at `announceTo`.
   *
   * @param {string} announceTo
   * @returns {Promise<{ process: Process, tcp: string, ws: string, id: string }>}
   */
  async relay (announceTo, ...extra) {
    const process = this.twistd('rendezvous-relay', '--p2p-listen', '/ip4/127.0.0.1/tcp/0', '--p2p-listen', '/ip4/127.0.0.1/tcp/0/ws', '--announce-to', announceTo, ...extra)
    const [tcp, ws] = await Promise.all([process.waitFor(TCP_LISTENING), process.waitFor(WS_LISTENING)])
    return { process, tcp: tcp[1], ws: ws[1], id: tcp[2] }
  }

  async stopAll () {
    await Promise.all(this.all.map((p) => p.kill()))
    rmSync(this.cwd, { recursive: true, force: true })
  }
}
