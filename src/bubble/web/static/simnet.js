// The Simulated internet panel (--net-sim): which names the program asked our DNS, which endpoints it
// contacted (with the name when the address came from our DNS), and what it sent, each
// clickable to its events (filters the event list) and to the captured payload's artifact.
// Every target-controlled string goes in as text (dom.js).
import { $, clear, el, fmtBytes, fmtInt } from "./dom.js";

const ROWS_CAP = 500; // rows per list; a flood is counted, not drawn

export class SimPanel {
  constructor(panel) {
    this.panel = panel;
    this.lists = { dns: $("sim-dns"), endpoints: $("sim-endpoints"), captures: $("sim-captures") };
    this.reset(null);
  }

  reset(runId) {
    this.runId = runId;
    this.names = new Map(); // "name TYPE" -> {name, type, answers:Set, seqs:[]}
    this.byAddress = new Map(); // address we answered -> name
    this.endpoints = new Map(); // "addr:port" -> {addr, port, name, seqs:[], bytes}
    this.captures = [];
    this.dirty = false;
    this.panel.hidden = true;
    for (const list of Object.values(this.lists)) clear(list);
  }

  /** One event; only network ones matter. Drawing waits for flush(). */
  add(ev) {
    if (ev.type === "net.dns") this.addDns(ev);
    else if (ev.type === "net.capture") this.addCapture(ev);
    else if ((ev.type === "net.connect" || ev.type === "net.send") && ev.decision === "ALLOW" &&
             typeof ev.port === "number" && ev.port !== 53) {
      this.endpoint(ev.peer, ev.port, ev.seq);
    } else return;
    this.dirty = true;
  }

  addDns(ev) {
    const key = `${ev.dns_name} ${ev.dns_type}`;
    let entry = this.names.get(key);
    if (!entry) {
      entry = { name: ev.dns_name, type: ev.dns_type, answers: new Set(), seqs: [] };
      this.names.set(key, entry);
    }
    if (ev.answer) {
      entry.answers.add(ev.answer);
      if (ev.dns_type === "A" || ev.dns_type === "AAAA") this.byAddress.set(ev.answer, ev.dns_name);
    }
    entry.seqs.push(ev.seq);
  }

  endpoint(addr, port, seq, bytes = 0) {
    const key = `${addr}:${port}`;
    let entry = this.endpoints.get(key);
    if (!entry) {
      entry = { addr, port, seqs: [], bytes: 0 };
      this.endpoints.set(key, entry);
    }
    entry.seqs.push(seq);
    entry.bytes += bytes;
    return entry;
  }

  addCapture(ev) {
    const entry = this.endpoint(ev.peer, ev.port, ev.seq, ev.bytes || 0);
    if (ev.dns_name) entry.name = ev.dns_name;
    this.captures.push(ev);
  }

  /** Filter the event list on these events (by their seq numbers) and bring it into view. */
  showEvents(seqs) {
    const filter = $("ev-filter");
    filter.value = seqs.length === 1 ? `"seq":${seqs[0]},` : `"seq":${seqs[seqs.length - 1]},`;
    filter.dispatchEvent(new Event("input", { bubbles: true }));
    $("events").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  eventsLink(label, seqs) {
    return el("button", { type: "button", class: "sim-link", title: `events #${seqs.join(", #")}`,
      on: { click: () => this.showEvents(seqs) } }, label);
  }

  flush() {
    if (!this.dirty) return;
    this.dirty = false;
    // Allowed connects also come from --trace-net; the panel is for the simulated internet.
    this.panel.hidden = !(this.names.size || this.captures.length);
    const { dns, endpoints, captures } = this.lists;
    clear(dns);
    for (const e of [...this.names.values()].slice(0, ROWS_CAP)) {
      dns.append(el("li", { class: "sim-row" },
        this.eventsLink(e.name, e.seqs),
        el("span", { class: "sim-tag" }, e.type),
        el("span", { class: "muted" }, e.answers.size ? `→ ${[...e.answers].join(", ")}` : "→ (none)"),
        e.seqs.length > 1 ? el("span", { class: "muted" }, ` ×${fmtInt(e.seqs.length)}`) : null));
    }
    clear(endpoints);
    for (const e of [...this.endpoints.values()].slice(0, ROWS_CAP)) {
      const name = e.name || this.byAddress.get(e.addr);
      endpoints.append(el("li", { class: "sim-row" },
        this.eventsLink(e.addr.includes(":") ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`, e.seqs),
        name ? el("span", { class: "sim-name" }, name) : null,
        el("span", { class: "muted" }, `${fmtInt(e.seqs.length)} event${e.seqs.length > 1 ? "s" : ""}` +
          (e.bytes ? ` · ${fmtBytes(e.bytes)} sent` : ""))));
    }
    clear(captures);
    for (const c of this.captures.slice(-ROWS_CAP)) captures.append(this.captureRow(c));
    $("sim-counts").textContent = `${fmtInt(this.names.size)} names · ` +
      `${fmtInt(this.endpoints.size)} endpoints · ${fmtInt(this.captures.length)} captures`;
  }

  captureRow(c) {
    const what = c.http_request || (c.tls_sni ? `TLS ${c.tls_sni}` : c.text.slice(0, 80) || "(nothing sent)");
    const where = c.peer.includes(":") ? `[${c.peer}]:${c.port}` : `${c.peer}:${c.port}`;
    return el("li", { class: `sim-row cap proto-${c.proto}` },
      el("span", { class: "sim-tag" }, c.proto),
      this.eventsLink(what, [c.seq]),
      el("span", { class: "muted" }, `${c.http_host || c.dns_name || where} · ${fmtBytes(c.bytes)}`),
      c.tls_sni && c.http_request ? el("span", { class: "sim-name" }, `SNI ${c.tls_sni}`) : null,
      c.artifact && this.runId
        ? el("a", { class: "sim-art", href: `/api/runs/${this.runId}/artifacts/${c.artifact}`,
            title: `sha256 ${c.sha256}` }, "payload ⬇")
        : null);
  }
}
