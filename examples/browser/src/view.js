// The page's DOM. Tests read it through data attributes: data-state on <body>,
// data-self-id, data-peer-id and data-connection on each member, data-message and
// data-from on each message received (its text, and on its item data-via).

const $ = (id) => document.getElementById(id)

export function shortId (id) {
  const text = id.toString()
  return `${text.slice(0, 4)}…${text.slice(-6)}`
}

export class View {
  constructor (onSend) {
    this.selected = undefined
    this.members = new Map()
    $('compose').addEventListener('submit', (event) => {
      event.preventDefault()
      const text = $('text').value.trim()
      if (text === '' || this.selected == null) return
      $('text').value = ''
      onSend(this.selected, text)
    })
  }

  setState (state, text) {
    document.body.dataset.state = state
    $('status').textContent = text
  }

  setSelf (peerId, namespace) {
    $('self').textContent = peerId.toString()
    $('self').dataset.selfId = peerId.toString()
    $('namespace').textContent = namespace
  }

  setRelay (text) {
    $('relay').textContent = text
  }

  /** Adds or updates the member `id` (a string). */
  addMember (id) {
    if (this.members.has(id)) return
    const item = document.createElement('li')
    item.dataset.peerId = id
    const button = document.createElement('button')
    button.type = 'button'
    button.title = id
    const name = document.createElement('code')
    name.textContent = shortId(id)
    const kind = document.createElement('span')
    kind.className = 'kind'
    kind.textContent = 'not connected'
    button.append(name, kind)
    button.addEventListener('click', () => this.select(id))
    item.append(button)
    $('members').append(item)
    this.members.set(id, item)
    if (this.selected == null) this.select(id)
  }

  removeMember (id) {
    this.members.get(id)?.remove()
    this.members.delete(id)
    if (this.selected === id) this.select(this.members.keys().next().value)
  }

  /** Shows how we are connected to `id`: 'webrtc', 'relay', 'direct' or undefined. */
  setConnection (id, kind) {
    const item = this.members.get(id)
    if (item == null) return
    const badge = item.querySelector('.kind')
    if (kind == null) {
      delete item.dataset.connection
      delete badge.dataset.kind
      badge.textContent = 'not connected'
    } else {
      item.dataset.connection = kind
      badge.dataset.kind = kind
      badge.textContent = kind === 'relay' ? 'via relay' : kind
    }
  }

  select (id) {
    this.selected = id
    for (const [member, item] of this.members) item.setAttribute('aria-current', String(member === id))
    $('to').textContent = id == null ? 'nobody' : shortId(id)
    $('text').disabled = id == null
    $('send').disabled = id == null
  }

  /** A message received (`from` set) or sent (`to` set); `via` is the connection kind. */
  addMessage ({ from, to, text, via, note }) {
    const item = document.createElement('li')
    const meta = document.createElement('span')
    meta.className = 'meta'
    const body = document.createElement('span')
    body.className = 'text'
    body.textContent = text
    if (from != null) {
      item.dataset.from = from
      item.dataset.via = via
      body.dataset.message = ''
      body.dataset.from = from
      meta.textContent = `from ${shortId(from)} via ${via}`
    } else {
      item.className = 'mine'
      item.dataset.to = to
      meta.textContent = note ?? `to ${shortId(to)} via ${via}`
    }
    item.append(meta, body)
    $('messages').append(item)
    item.scrollIntoView({ block: 'nearest' })
    return meta
  }
}
