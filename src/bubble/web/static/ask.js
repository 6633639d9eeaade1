// Ask mode: each call the run holds (`policy.ask`) is a card with Allow once / Deny / Always
// allow this path or host and a countdown to the launcher's deadline; the decision event that
// follows for the same call (same syscall, pid and path or peer) turns the card into its
// outcome. Answers go to POST /api/runs/<id>/decisions (the store), never to a local process.
// Event fields are the target's: shown with textContent only (dom.js).
import { postJSON } from "./api.js";
import { clear, el } from "./dom.js";

const TICK_MS = 500;
const CARD_CAP = 100; // held calls drawn; a run holding more is answered by the timeout

/** The call a held event and its decision share. */
const callKey = (ev) => [ev.syscall, ev.pid, ev.path ?? "", ev.peer ?? "", ev.port ?? ""].join("\u0000");

function placeLabel(ev) {
  if (ev.path) return "Always allow this path";
  if (ev.peer) return "Always allow this host";
  return null;
}

export class AskCards {
  constructor(panel, list) {
    Object.assign(this, { panel, list });
    this.timer = 0;
    this.reset(null);
  }

  reset(runId) {
    clearInterval(this.timer);
    this.timer = 0;
    this.runId = runId;
    this.pending = []; // {key, ev, card, deadline}
    this.live = true;
    clear(this.list);
    this.panel.hidden = true;
  }

  /** The run ended: no answer can reach it any more. */
  end() {
    this.live = false;
    for (const p of this.pending) this.outcome(p, "not decided (the run ended)", "denied");
    this.pending = [];
    clearInterval(this.timer);
    this.timer = 0;
  }

  add(ev) {
    if (this.list.childElementCount >= CARD_CAP) return;
    const deadline = Date.parse(ev.ts) + 1000 * Number(ev.ask_timeout_s || 0);
    const what = ev.path ?? (ev.peer != null ? `${ev.peer}${ev.port != null ? `:${ev.port}` : ""}` : "");
    const buttons = el("div", { class: "ask-buttons" });
    const state = el("span", { class: "ask-state muted" });
    const card = el(
      "div",
      { class: `vcard ask-card cat-${ev.category ?? "sys"}`, "data-seq": ev.seq },
      el("div", { class: "v-head" },
        el("span", { class: "v-cat" }, "HELD"),
        el("span", { class: "v-sys" }, String(ev.syscall ?? "?")),
        el("span", { class: "muted" }, `pid ${ev.pid ?? "?"}`),
        el("span", { class: "v-time ask-countdown" })),
      el("div", { class: "ask-what" }, String(what)),
      ev.flags ? el("div", { class: "muted" }, String(ev.flags)) : null,
      buttons,
      state,
    );
    const entry = { key: callKey(ev), ev, card, deadline, buttons, state };
    const answer = (action) => this.answer(entry, action);
    buttons.append(
      el("button", { class: "btn small primary", type: "button", on: { click: () => answer("allow") } }, "Allow once"),
      el("button", { class: "btn small danger", type: "button", on: { click: () => answer("deny") } }, "Deny"),
    );
    const always = placeLabel(ev);
    if (always) buttons.append(el("button", { class: "btn small", type: "button", on: { click: () => answer("always") } }, always));
    this.pending.push(entry);
    this.list.append(card);
    this.panel.hidden = false;
    this.tick();
    if (!this.timer && this.live) this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** A policy.allow / policy.alert: the outcome of the oldest held call it matches. */
  settle(ev) {
    const key = callKey(ev);
    const i = this.pending.findIndex((p) => p.key === key && p.ev.seq < ev.seq);
    if (i < 0) return;
    const [entry] = this.pending.splice(i, 1);
    const who = ev.decided_by ? ` by ${ev.decided_by}` : "";
    if (ev.type === "policy.allow") this.outcome(entry, `allowed${who}`, "allowed");
    else this.outcome(entry, `denied${who}${ev.reason === "fail-closed" ? " (no answer in time)" : ""}`, "denied");
    if (!this.pending.length) { clearInterval(this.timer); this.timer = 0; }
  }

  outcome(entry, text, cls) {
    entry.buttons.remove();
    entry.card.querySelector(".ask-countdown").textContent = "";
    entry.card.classList.add(`ask-${cls}`);
    entry.state.className = `ask-state ask-${cls}`;
    entry.state.textContent = text;
  }

  async answer(entry, action) {
    for (const b of entry.buttons.querySelectorAll("button")) b.disabled = true;
    entry.state.textContent = `sending “${action}”…`;
    try {
      await postJSON(`/api/runs/${this.runId}/decisions`, { seq: entry.ev.seq, action });
      if (this.pending.includes(entry)) entry.state.textContent = `“${action}” sent; waiting for the sandbox…`;
    } catch (err) {
      entry.state.textContent = `${err.message}${err.hint ? ` — ${err.hint}` : ""}`;
    }
  }

  tick() {
    const now = Date.now();
    for (const p of this.pending) {
      const left = Math.max(0, Math.ceil((p.deadline - now) / 1000));
      const text = Number.isNaN(left) ? "" : left > 0 ? `denied in ${left} s` : "timing out…";
      p.card.querySelector(".ask-countdown").textContent = text;
    }
  }
}
