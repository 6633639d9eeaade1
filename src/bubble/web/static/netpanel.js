// Network Activity: the allowed traffic a run was seen making (`net.*` events, recorded when
// the network is allowed and traced), grouped by call and peer host like the violations,
// with ports, bytes sent and the first payload bytes when peeked. Denied traffic stays in
// Security Violations.
import { clear, el, fmtBytes, fmtInt } from "./dom.js";
import { PatternGroups, examples, refresh } from "./patterns.js";

const CARD_CAP = 100;

function operation(ev) {
  return [ev.type, ev.family_name ?? ev.domain ?? ev.family ?? ""].join(" ");
}

export class NetActivity {
  constructor(panel, list, more) {
    Object.assign(this, { panel, list, more });
    this.groups = new PatternGroups(operation);
    this.reset();
  }

  reset() {
    this.groups.reset();
    this.fresh = [];
    this.dirty = new Set();
    this.undrawn = 0;
    clear(this.list);
    this.panel.hidden = true;
    this.more.hidden = true;
  }

  /** Count one net.* event; drawing waits for flush(). */
  add(ev) {
    const [group, isNew] = this.groups.add(ev);
    if (isNew) {
      group.bytes = 0;
      group.ports = new Set();
      if (this.groups.size <= CARD_CAP) this.fresh.push(group);
      else this.undrawn += 1;
    }
    if (typeof ev.bytes === "number") group.bytes += ev.bytes;
    if (ev.port != null && group.ports.size < 20) group.ports.add(ev.port);
    if (ev.hex && !group.hex) group.hex = ev.hex;
    this.dirty.add(group);
  }

  card(group) {
    const ev = group.ev;
    group.countEl = el("span", { class: "v-count", title: "times seen" });
    group.timeEl = el("span", { class: "v-time" });
    group.extraEl = el("dl", { class: "v-ctx" });
    return el("div", { class: "net-card cat-net", "data-type": ev.type, "data-pattern": group.pattern },
      el("div", { class: "v-head" },
        el("span", { class: "v-cat" }, "NET"),
        el("span", { class: "v-sys" }, ev.type ?? "?"),
        el("span", { class: "muted" }, ev.family_name ?? ev.domain ?? ""),
        group.countEl, group.timeEl),
      group.extraEl,
      examples(group, "endpoints"));
  }

  details(group) {
    const box = group.extraEl;
    clear(box);
    const add = (label, value) => box.append(el("dt", {}, label), el("dd", {}, value));
    if (group.pattern) add("host", group.pattern);
    if (group.ports.size) add("ports", [...group.ports].join(", "));
    if (group.ev.sock_type) add("type", group.ev.sock_type);
    if (group.bytes) add("sent", fmtBytes(group.bytes));
    if (group.hex) add("first bytes", group.hex);
  }

  flush() {
    if (this.fresh.length) {
      const frag = document.createDocumentFragment();
      for (const group of this.fresh) frag.appendChild((group.node = this.card(group)));
      this.fresh = [];
      this.list.appendChild(frag);
      this.panel.hidden = false;
    }
    if (!this.dirty.size) return;
    for (const group of this.dirty) {
      refresh(group);
      if (group.node) this.details(group);
    }
    this.dirty.clear();
    this.more.hidden = this.undrawn === 0;
    this.more.textContent = `+${fmtInt(this.undrawn)} more not drawn (filter All Events by "net")`;
  }
}
