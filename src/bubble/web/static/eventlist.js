// All Events: every event is kept (as its raw JSON line plus type and category) but at
// most DOM_CAP matching cards are in the DOM -- the newest ones. Filters (category chips
// and a text filter) rebuild the list from the kept data.
import { atBottom, clear, el, fmtInt, fmtTime } from "./dom.js";

const DOM_CAP = 400;
// In a flood the list is redrawn at most this often; a trickle is drawn at once.
const FLOOD_REDRAW_MS = 250;
const TRICKLE = 20;
const CHIPS = [
  ["alerts", "⚠ alerts"], ["fs", "fs"], ["net", "net"], ["sys", "sys"],
  ["spawn", "spawn"], ["exit", "exit"], ["msg", "msg"], ["other", "other"],
];

/** The chip an event belongs to. */
export function categoryOf(ev) {
  const type = ev.type || "";
  if (type === "policy.alert") return ["fs", "net", "sys"].includes(ev.category) ? ev.category : "sys";
  if (type.startsWith("fs.")) return "fs";
  if (type.startsWith("net.")) return "net";
  if (type === "process.spawn") return "spawn";
  if (type === "process.exit") return "exit";
  if (type === "sandbox.msg") return "msg";
  return "other";
}

export class EventList {
  constructor(list, hiddenNote, count, chips, filter) {
    Object.assign(this, { list, hiddenNote, count });
    this.selected = new Set();
    this.query = "";
    this.chipEls = new Map();
    for (const [key, label] of CHIPS) {
      const chip = el("button", { type: "button", class: `chip cat-${key}`, "data-chip": key,
        "aria-pressed": "false" }, label, el("span", { class: "chip-n" }));
      chip.addEventListener("click", () => this.toggle(key));
      this.chipEls.set(key, chip);
      chips.appendChild(chip);
    }
    // Follow the tail unless the user scrolled up: known from scroll events, so drawing
    // never has to ask for layout first. Our own scrolling is not the user's intent.
    this.follow = true;
    this.pinnedAt = 0;
    list.addEventListener("scroll", () => {
      if (performance.now() - this.pinnedAt > 250) this.follow = atBottom(list);
    }, { passive: true });
    this.lastDraw = 0;
    let timer = 0;
    filter.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { this.query = filter.value.trim().toLowerCase(); this.rebuild(); }, 120);
    });
    this.reset();
  }

  reset() {
    this.events = [];
    this.pending = [];
    this.shown = 0;
    this.perChip = Object.fromEntries(CHIPS.map(([key]) => [key, 0]));
    clear(this.list);
    this.hiddenNote.hidden = true;
    this.updateCounts();
  }

  toggle(key) {
    if (this.selected.has(key)) this.selected.delete(key);
    else this.selected.add(key);
    this.chipEls.get(key).setAttribute("aria-pressed", String(this.selected.has(key)));
    this.rebuild();
  }

  matches(entry) {
    if (this.selected.size) {
      const alert = entry.type === "policy.alert" && this.selected.has("alerts");
      if (!alert && !this.selected.has(entry.cat)) return false;
    }
    return !this.query || entry.raw.toLowerCase().includes(this.query);
  }

  /** Keep one event (raw = its JSON line, ev = parsed); drawing waits for flush(). */
  add(raw, ev) {
    const entry = { seq: ev.seq, type: ev.type, cat: categoryOf(ev), raw };
    this.events.push(entry);
    this.perChip[entry.cat] += 1;
    if (entry.type === "policy.alert") this.perChip.alerts += 1;
    if (this.matches(entry)) this.pending.push(entry);
  }

  card(entry) {
    let ev;
    try { ev = JSON.parse(entry.raw); } catch { ev = {}; }
    const { seq, ts, type, ...rest } = ev;
    return el("div", { class: `ev cat-${entry.cat}`, "data-seq": entry.seq },
      el("div", { class: "ev-head" },
        el("span", { class: "ev-type" }, type ?? "?"),
        el("span", { class: "ev-seq" }, `#${seq}`),
        el("span", { class: "ev-time", title: ts ?? "" }, fmtTime(ts))),
      el("pre", { class: "ev-body" }, JSON.stringify(rest, null, 2)));
  }

  /** Append what arrived since the last draw, keeping at most DOM_CAP cards. `force`
   * draws now; otherwise a flood is drawn every FLOOD_REDRAW_MS. */
  flush(force = false) {
    const now = performance.now();
    if (this.pending.length && (force || this.pending.length <= TRICKLE ||
        now - this.lastDraw >= FLOOD_REDRAW_MS)) {
      this.lastDraw = now;
      const take = this.pending.slice(-DOM_CAP);
      const drop = this.list.childElementCount + take.length - DOM_CAP;
      for (let i = 0; i < drop; i += 1) this.list.firstElementChild.remove();
      const frag = document.createDocumentFragment();
      for (const entry of take) frag.appendChild(this.card(entry));
      this.list.appendChild(frag);
      this.shown += this.pending.length;
      this.pending = [];
      if (this.follow) this.pin();
    }
    this.updateCounts();
  }

  /** Scroll to the end -- again once the cards there are laid out, because off-screen
   * cards only have an estimated height until then. */
  pin() {
    this.pinnedAt = performance.now();
    this.list.scrollTop = this.list.scrollHeight;
    requestAnimationFrame(() => {
      this.pinnedAt = performance.now();
      this.list.scrollTop = this.list.scrollHeight;
    });
  }

  /** True while arrived events wait to be drawn. */
  get behind() {
    return this.pending.length > 0;
  }

  rebuild() {
    clear(this.list);
    this.pending = [];
    this.shown = 0;
    for (const entry of this.events) if (this.matches(entry)) this.pending.push(entry);
    this.follow = true;
    this.flush(true);
  }

  updateCounts() {
    this.count.textContent = this.events.length ? `${fmtInt(this.events.length)} events` : "";
    for (const [key, chip] of this.chipEls) {
      chip.lastChild.textContent = this.perChip[key] ? ` ${fmtInt(this.perChip[key])}` : "";
    }
    const hidden = this.shown - this.list.childElementCount;
    this.hiddenNote.hidden = hidden <= 0;
    this.hiddenNote.textContent = `${fmtInt(hidden)} earlier matching events not drawn — ` +
      "narrow the filters, or download the events artifact.";
  }
}
