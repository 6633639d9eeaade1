// Security Violations: one colour-coded card per operation (category, syscall, errno) and
// pattern of what it touched (patterns.js), with a count, first/last time and the distinct
// values on demand. The DOM holds at most CARD_CAP cards; beyond that groups are counted,
// not drawn (the data stays in All Events).
import { clear, el, fmtInt } from "./dom.js";
import { PatternGroups, examples, refresh } from "./patterns.js";

const CARD_CAP = 200;
const CATEGORIES = ["fs", "net", "sys"];

function peerText(ev) {
  if (ev.peer === undefined || ev.peer === null) return null;
  const host = String(ev.peer).includes(":") && ev.port != null ? `[${ev.peer}]` : String(ev.peer);
  return ev.port != null ? `${host}:${ev.port}` : host;
}

/** What a network alert says the program wanted, in one line: "connect 10.0.0.1:4444",
 * "DNS example.com (A, AAAA)"; null for other alerts. Target data: shown with textContent. */
export function intent(ev) {
  if (ev.category !== "net") return null;
  if (ev.dns_name) {
    const types = String(ev.dns_type ?? "?").split(",").join(", ");
    return `DNS ${ev.dns_name} (${types})`;
  }
  const peer = peerText(ev);
  return peer ? `${ev.syscall ?? "?"} ${peer}` : null;
}

/** The context lines of a card: [label, value] pairs for the fields an event has. */
function context(ev) {
  const out = [];
  const add = (label, value) => {
    if (value !== undefined && value !== null && value !== "") out.push([label, String(value)]);
  };
  add("path", ev.path);
  add("to", ev.path2);
  add("flags", ev.flags);
  if (typeof ev.mode === "number") add("mode", `0${ev.mode.toString(8)}`);
  add("peer", peerText(ev));
  add("family", ev.family_name ?? ev.family);
  add("type", ev.sock_type);
  add("detail", ev.detail);
  add("pid", ev.pid);
  return out;
}

function operation(ev) {
  return [ev.category, ev.syscall, ev.denied ?? ev.reason].join(" ");
}

export class Violations {
  constructor(list, empty, more, counts) {
    Object.assign(this, { list, empty, more, counts });
    this.groups = new PatternGroups(operation);
    this.reset();
  }

  reset() {
    this.groups.reset();
    this.fresh = [];
    this.dirty = new Set();
    this.byCat = { fs: 0, net: 0, sys: 0 };
    this.total = 0;
    this.undrawn = 0;
    clear(this.list);
    clear(this.counts);
    this.empty.hidden = false;
    this.more.hidden = true;
  }

  /** Count one policy.alert; drawing waits for flush(). */
  add(ev) {
    const [group, isNew] = this.groups.add(ev);
    if (isNew) {
      if (this.groups.size <= CARD_CAP) this.fresh.push(group);
      else this.undrawn += 1;
    }
    this.dirty.add(group);
    this.total += 1;
    const cat = CATEGORIES.includes(ev.category) ? ev.category : "sys";
    this.byCat[cat] += 1;
  }

  card(group) {
    const ev = group.ev;
    const cat = CATEGORIES.includes(ev.category) ? ev.category : "sys";
    group.countEl = el("span", { class: "v-count", title: "times seen" });
    group.timeEl = el("span", { class: "v-time" });
    const ctx = el("dl", { class: "v-ctx" });
    const isPath = ev.path !== undefined && ev.path !== null;
    const own = isPath ? "path" : "peer";
    // Once a second distinct value arrives, the pattern row appears and the first event's
    // own path or peer becomes its example.
    group.patternRow = [el("dt", { hidden: true }, "pattern"), el("dd", { class: "v-pattern", hidden: true }, group.pattern)];
    ctx.append(...group.patternRow);
    for (const [label, value] of context(ev)) {
      if (label === "pid") continue;
      const dt = el("dt", {}, label);
      if (label === own) group.ownLabel = dt;
      ctx.append(dt, el("dd", {}, value));
    }
    return el("div", { class: `vcard cat-${cat}`, "data-category": cat, "data-pattern": group.pattern },
      el("div", { class: "v-head" },
        el("span", { class: "v-cat" }, cat.toUpperCase()),
        el("span", { class: "v-sys" }, ev.syscall ?? "?"),
        el("span", { class: "v-errno" }, ev.denied ?? ev.reason ?? ""),
        group.countEl, group.timeEl),
      intent(ev) && el("div", { class: "v-intent" }, intent(ev)),
      ctx,
      examples(group, isPath ? "paths" : "endpoints"));
  }

  /** Draw new cards and refresh changed counts (once per animation frame). */
  flush() {
    if (this.fresh.length) {
      const frag = document.createDocumentFragment();
      for (const group of this.fresh) frag.appendChild((group.node = this.card(group)));
      this.fresh = [];
      this.list.appendChild(frag);
    }
    if (!this.dirty.size) return;
    for (const group of this.dirty) {
      refresh(group);
      if (group.node && group.values.size > 1 && group.patternRow[0].hidden) {
        for (const node of group.patternRow) node.hidden = false;
        if (group.ownLabel) group.ownLabel.textContent = "e.g.";
      }
    }
    this.dirty.clear();
    this.empty.hidden = this.total > 0;
    clear(this.counts);
    for (const cat of CATEGORIES) {
      if (this.byCat[cat]) {
        this.counts.append(el("span", { class: `pill cat-${cat}` }, `${cat} ${fmtInt(this.byCat[cat])}`));
      }
    }
    this.more.hidden = this.undrawn === 0;
    this.more.textContent = `+${fmtInt(this.undrawn)} more patterns not drawn ` +
      "(filter All Events by category to see them)";
  }
}
