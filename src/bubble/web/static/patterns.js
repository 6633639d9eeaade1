// Patterns, not floods: events are grouped by operation and by the *shape* of what they
// touch -- a path with its numbers and hex runs folded (`/tmp/x{n}`), or a peer host -- so
// 100,000 writes to /tmp/x0 … /tmp/x99999 are one card with a count, a first and last time
// and the distinct values a click away. When one directory still yields many shapes
// (random temp names), later ones fold into `dir/*.ext`.
import { clear, el, fmtInt, fmtTime } from "./dom.js";

const FOLD_AFTER = 12; // distinct shapes per operation and directory before `dir/*`
const EXAMPLES = 50; // distinct values remembered per group (the rest are counted)

/** A path's shape: UUIDs -> {uuid}, hex runs with a digit -> {hex}, digit runs -> {n}. */
export function shape(part) {
  return part
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, "{uuid}")
    .replace(/[0-9a-f]{8,}/gi, (m) => (/\d/.test(m) ? "{hex}" : m))
    .replace(/\d+/g, "{n}");
}

/** "/tmp/x123" -> "/tmp/x{n}"; anything not an absolute path is kept as it is. */
export function pathShape(path) {
  if (typeof path !== "string" || !path.startsWith("/")) return path ?? "";
  return shape(path); // "/" is neither a digit nor hex: runs never cross components
}

function hostOf(ev) {
  if (ev.peer === undefined || ev.peer === null) return "";
  const peer = String(ev.peer);
  return peer.startsWith("/") ? pathShape(peer) : peer;
}

/** The concrete value a group collects examples of: the path, or host:port. */
export function valueOf(ev) {
  if (ev.path !== undefined && ev.path !== null) return String(ev.path);
  if (ev.peer === undefined || ev.peer === null) return "";
  const host = String(ev.peer).includes(":") && ev.port != null ? `[${ev.peer}]` : String(ev.peer);
  return ev.port != null ? `${host}:${ev.port}` : host;
}

/** Groups of events keyed by operation + pattern, with counts and first/last times. */
export class PatternGroups {
  /** `operation(ev)` names what was done, e.g. "fs openat EPERM". */
  constructor(operation) {
    this.operation = operation;
    this.reset();
  }

  reset() {
    this.groups = new Map();
    this.shapes = new Map(); // operation + directory -> Set of shapes seen
  }

  get size() {
    return this.groups.size;
  }

  pattern(op, ev) {
    if (ev.path === undefined || ev.path === null) return hostOf(ev);
    const full = pathShape(String(ev.path));
    const cut = full.lastIndexOf("/");
    if (cut < 0) return full;
    const dir = full.slice(0, cut);
    const key = `${op}\u0000${dir}`;
    let seen = this.shapes.get(key);
    if (!seen) this.shapes.set(key, (seen = new Set()));
    if (seen.has(full)) return full;
    if (seen.size < FOLD_AFTER) { seen.add(full); return full; }
    const dot = full.lastIndexOf(".");
    return `${dir}/*${dot > cut + 1 ? full.slice(dot) : ""}`;
  }

  /** Count one event; returns [group, isNew]. */
  add(ev) {
    const op = this.operation(ev);
    const pattern = this.pattern(op, ev);
    const key = `${op}\u0000${pattern}`;
    let group = this.groups.get(key);
    const fresh = !group;
    if (fresh) {
      group = { ev, op, pattern, count: 0, first: ev.ts, last: ev.ts, values: new Map(), more: 0, node: null };
      this.groups.set(key, group);
    }
    group.count += 1;
    group.last = ev.ts;
    const value = valueOf(ev);
    if (group.values.has(value)) group.values.set(value, group.values.get(value) + 1);
    else if (group.values.size < EXAMPLES) group.values.set(value, 1);
    else group.more += 1;
    return [group, fresh];
  }
}

/** The expandable list of a group's distinct values, built when it is first opened. */
export function examples(group, noun) {
  const details = el("details", { class: "g-values" });
  const summary = el("summary", {});
  const list = el("ul", { class: "g-list" });
  details.append(summary, list);
  details.addEventListener("toggle", () => {
    if (!details.open) return;
    clear(list);
    for (const [value, n] of group.values) {
      list.append(el("li", {}, el("code", {}, value), n > 1 ? el("span", { class: "muted" }, ` ×${fmtInt(n)}`) : null));
    }
    if (group.more) list.append(el("li", { class: "muted" }, `… and ${fmtInt(group.more)} more not listed`));
  });
  group.summaryEl = summary;
  group.noun = noun;
  return details;
}

/** Refresh a drawn group's count, time range and "N distinct …" line. */
export function refresh(group) {
  if (!group.node) return;
  group.countEl.textContent = group.count > 1 ? `×${fmtInt(group.count)}` : "";
  const first = fmtTime(group.first);
  const last = fmtTime(group.last);
  group.timeEl.textContent = first === last ? first : `${first} – ${last}`;
  group.timeEl.title = "first – last time seen";
  if (group.summaryEl) {
    const details = group.summaryEl.parentNode;
    details.hidden = group.values.size <= 1;
    group.summaryEl.textContent = `${fmtInt(group.values.size)} distinct ${group.noun}` +
      (group.more ? ` listed, ${fmtInt(group.more)} more times not listed` : "");
  }
}
