"""The status page: one self-contained HTML document that polls ``status.json``.

Its script writes every value with ``textContent`` (namespace names are chosen by
strangers), and its Content-Security-Policy allows exactly its own inline style and
script, by hash, and fetches from its own origin.
"""

from __future__ import annotations

import base64
import hashlib

POLL_SECONDS = 1.0

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
.meta { color: #666; }
.ok { color: #1a7f37; }
.bad { color: #b42318; }
table { border-collapse: collapse; min-width: 22em; }
th, td { text-align: left; padding: .2em .8em .2em 0; border-bottom: 1px solid #e3e3e3; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, monospace; word-break: break-all; }
"""

SCRIPT = """
"use strict";
const byId = (id) => document.getElementById(id);
const put = (id, value) => { byId(id).textContent = String(value); };
function row(cells) {
  const tr = document.createElement("tr");
  for (const [value, kind] of cells) {
    const td = document.createElement("td");
    td.textContent = String(value);
    if (kind) td.className = kind;
    tr.appendChild(td);
  }
  return tr;
}
function show(s) {
  put("version", s.version);
  put("scope", s.scope);
  for (const key of ["live_raw", "live_p2p", "standard", "total"]) {
    put("sessions-" + key, s.sessions[key]);
  }
  const ns = s.namespaces;
  put("ns-total", ns.total);
  put("ns-listed", ns.listed.length);
  put("registrations", ns.registrations);
  byId("namespaces").replaceChildren(...ns.listed.map(
    (n) => row([[n.name, ""], [n.registrations, "n"], [n.subscribers, "n"]])));
  const relays = s.relays;
  put("relay-namespace", relays.namespace);
  put("relay-total", relays.total);
  put("relay-listed", relays.listed.length);
  byId("relays").replaceChildren(...relays.listed.map((id) => row([[id, "id"]])));
}
async function poll() {
  const state = byId("state");
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    show(await response.json());
    state.textContent = "live, updated " + new Date().toLocaleTimeString();
    state.className = "ok";
  } catch (error) {
    state.textContent = "unreachable (" + error.message + "), retrying";
    state.className = "bad";
  }
  setTimeout(poll, POLL_MS);
}
poll();
""".replace("POLL_MS", str(int(POLL_SECONDS * 1000)))

BODY = """
<h1>rendezvous <span id="version"></span></h1>
<p class="meta">Status: <span id="state">loading</span>. Shows <span id="scope"></span>.</p>
<h2>Sessions</h2>
<table>
<thead><tr><th>dialect</th><th class="n">open</th></tr></thead>
<tbody>
<tr><td>live, raw stream (--listen)</td><td class="n" id="sessions-live_raw"></td></tr>
<tr><td>live over libp2p</td><td class="n" id="sessions-live_p2p"></td></tr>
<tr><td>standard (/rendezvous/1.0.0)</td><td class="n" id="sessions-standard"></td></tr>
<tr><td>all</td><td class="n" id="sessions-total"></td></tr>
</tbody>
</table>
<h2>Namespaces</h2>
<p class="meta"><span id="ns-total"></span> namespaces, <span id="registrations"></span>
registrations; the <span id="ns-listed"></span> largest listed.</p>
<table>
<thead><tr><th>namespace</th><th class="n">members</th><th class="n">subscribers</th></tr></thead>
<tbody id="namespaces"></tbody>
</table>
<h2>Relays</h2>
<p class="meta"><span id="relay-total"></span> registered in <span id="relay-namespace"></span>;
<span id="relay-listed"></span> listed.</p>
<table>
<thead><tr><th>peer id</th></tr></thead>
<tbody id="relays"></tbody>
</table>
"""


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


HTML = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    "<title>rendezvous status</title>\n"
    f"<style>{STYLE}</style>\n</head>\n<body>{BODY}<script>{SCRIPT}</script>\n</body>\n</html>\n"
).encode()

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src {_hash(SCRIPT)}; "
    f"style-src {_hash(STYLE)}; "
    "connect-src 'self'; "
    "img-src 'none'; "
    "base-uri 'none'; "
    "form-action 'none'; "
    "frame-ancestors 'none'"
).encode()
