// "Compare with…": what two runs tried, as `bubble diff` groups it (GET /api/diff?a=&b=):
// only in A, only in B, decided differently; rows grouped by operation, then place. Places
// are the target's (paths, peers): text nodes only (dom.js).
import { getJSON } from "./api.js";
import { $, clear, el, fmtInt, fmtTime, showErrorIn } from "./dom.js";

const GROUPS = [
  ["only_a", "Only in A", "tried by A, never by B"],
  ["only_b", "Only in B", "tried by B, never by A"],
  ["changed", "Decided differently", "denied in one run, allowed in the other"],
];

const decision = (d) => el("span", { class: `dec dec-${d}` }, d);

function decisions(side) {
  return [side.decisions.flatMap((d, i) => (i ? [" / ", decision(d)] : [decision(d)])),
    el("span", { class: "muted" }, ` ×${fmtInt(side.count)}`)];
}

function runLabel(letter, run) {
  return el("div", { class: `cmp-run cmp-${letter.toLowerCase()}`, "data-run": run.id },
    el("span", { class: "cmp-letter" }, letter),
    el("a", { href: `/runs/${run.id}`, class: "cmp-cmd", title: run.command_line }, run.command_line),
    el("span", { class: "muted" }, ` #${run.num ?? "?"} · ${fmtTime(run.created_at)} · ${run.status}`));
}

function table(key, rows) {
  const changed = key === "changed";
  const head = el("tr", {}, el("th", {}, "Operation"), el("th", {}, "Place"),
    ...(changed ? [el("th", {}, "A"), el("th", {}, "B")] : [el("th", {}, "Decision")]));
  const body = el("tbody");
  let last = null;
  for (const r of rows) {
    const first = r.operation !== last;
    last = r.operation;
    body.append(el("tr", { class: first ? "op-first" : "op-more" },
      el("td", { class: "cmp-op" }, first ? r.operation : ""),
      el("td", { class: "cmp-target" }, r.target || "–"),
      ...(changed ? [el("td", {}, decisions(r.a)), el("td", {}, decisions(r.b))] : [el("td", {}, decisions(r))])));
  }
  return el("table", { class: "cmp-table" }, el("thead", {}, head), body);
}

/** Render `GET /api/diff` into the compare panel. */
export function renderDiff(result) {
  const box = $("compare-body");
  clear(box);
  box.append(el("div", { class: "cmp-runs" }, runLabel("A", result.a), runLabel("B", result.b)));
  for (const [key, title, what] of GROUPS) {
    const rows = result[key];
    const section = el("section", { class: "cmp-group", id: `cmp-${key}` },
      el("h3", {}, `${title} `, el("span", { class: "cmp-n" }, fmtInt(rows.length)),
        el("span", { class: "muted" }, ` — ${what}`)));
    section.append(rows.length ? table(key, rows) : el("p", { class: "muted" }, "nothing"));
    box.append(section);
  }
}

/** Compare run `a` (the one on screen) with run `b`; shows and scrolls to the panel. */
export async function compare(a, b) {
  const panel = $("compare");
  panel.hidden = false;
  clear($("compare-body"));
  $("compare-body").append(el("p", { class: "muted" }, "Comparing…"));
  try {
    renderDiff(await getJSON(`/api/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`));
  } catch (err) {
    clear($("compare-body"));
    const box = el("p", { class: "form-error", role: "alert" });
    $("compare-body").append(box);
    showErrorIn(box, err);
  }
  panel.scrollIntoView({ block: "start" });
}
