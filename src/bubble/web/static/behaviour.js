// Behaviour view: the run's report (GET /api/runs/<id>/report) as a collapsible process tree,
// ATT&CK-tagged signatures linking to their evidence events, and the files/network summary.
// Self-contained: it watches the Execution Summary for a finished run and needs no other
// module's hooks. Target data goes in as text only (dom.js).
import { getJSON } from "./api.js";
import { $, clear, el, fmtInt } from "./dom.js";

const DONE = new Set(["completed", "timeout", "failed", "interrupted", "cancelled"]);
const SEV_ORDER = ["critical", "high", "medium", "low", "informational"];
const MAX_ROWS = 200;
const AUTO_LIMIT = 20000; // events: beyond this the report waits for a click

function endText(node) {
  if (node.signal != null) {
    const name = node.signal_name || `signal ${node.signal}`;
    return `killed by ${name}${node.core_suppressed ? " (core dump refused)" : ""}`;
  }
  if (node.exit_code != null) return `exit ${node.exit_code}`;
  return "end not seen";
}

function argvText(node) {
  const argv = node.argv || (node.exe ? [node.exe] : ["?"]);
  return argv.join(" ");
}

/** A link to one event: scrolls to it in All Events when it is there, else opens its JSON. */
function evidence(runId, seq) {
  const href = `/api/runs/${runId}/events?format=json&after=${seq - 1}&limit=1`;
  return el("a", {
    href, class: "evlink", "data-seq": seq, target: "_blank", rel: "noopener",
    on: {
      click: (e) => {
        const row = document.querySelector(`#ev-list [data-seq="${seq}"]`);
        if (!row) return;
        e.preventDefault();
        row.scrollIntoView({ block: "center" });
        row.classList.add("flash");
        setTimeout(() => row.classList.remove("flash"), 1500);
      },
    },
  }, `#${seq}`);
}

const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;

function processNode(node, depth) {
  const end = node.signal != null ? "bad" : node.exit_code === 0 ? "ok" : "warn";
  const head = el("summary", { class: "proc-head" },
    el("code", { class: "pid" }, `[${node.pid}]`), " ",
    el("code", { class: "argv", title: node.exe || "" }, argvText(node)), " ",
    el("span", { class: `end ${end}` }, endText(node)),
    node.denied ? el("span", { class: "pill deny" }, `${fmtInt(node.denied)} denied`) : null,
    node.alerts ? el("span", { class: "pill alert" }, plural(node.alerts, "alert")) : null);
  const box = el("details", { class: "proc", "data-pid": node.pid, open: depth < 3 ? "" : null }, head);
  const kids = el("div", { class: "proc-kids" });
  for (const child of node.children || []) kids.append(processNode(child, depth + 1));
  if (!node.children?.length) box.classList.add("leaf");
  box.append(kids);
  return box;
}

function signatures(rep, runId) {
  if (!rep.signatures.length) return el("p", { class: "ok" }, "✓ No signature matched");
  const list = el("ul", { class: "sigs" });
  const sorted = [...rep.signatures].sort(
    (a, b) => SEV_ORDER.indexOf(a.severity) - SEV_ORDER.indexOf(b.severity));
  for (const s of sorted) {
    const links = s.events.slice(0, 12).map((seq) => [evidence(runId, seq), " "]);
    list.append(el("li", { class: `sig sev-${s.severity}`, "data-rule": s.id },
      el("span", { class: `sev sev-${s.severity}` }, s.severity), " ",
      el("b", {}, s.title), " ",
      el("span", { class: "attack" }, s.attack.join(", ")), " ",
      el("span", { class: `outcome ${s.outcome}` }, s.outcome), " ",
      el("span", { class: "evidence" }, "evidence: ", links,
        s.events.length > 12 ? `… ${s.events.length - 12} more` : null),
      s.description ? el("div", { class: "muted desc" }, s.description) : null));
  }
  return list;
}

function table(headers, rows) {
  const t = el("table", { class: "btable" }, el("tr", {}, headers.map((h) => el("th", {}, h))));
  for (const r of rows.slice(0, MAX_ROWS)) t.append(el("tr", {}, r.map((c) => el("td", {}, c))));
  if (rows.length > MAX_ROWS) t.append(el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, `… ${rows.length - MAX_ROWS} more in the JSON report`)));
  return t;
}

const decision = (d) => el("span", { class: `dec ${d}` }, d);

function filesAndNetwork(rep) {
  const out = [];
  const f = rep.files;
  if (f.mutations.length) {
    out.push(el("h3", {}, `✎ Files (${f.mutations.length})`), table(["", "operation", "path", "×"],
      f.mutations.map((m) => [decision(m.decision), m.operation,
        el("code", {}, m.path2 ? `${m.path} → ${m.path2}` : m.path), String(m.count)])));
  }
  for (const [key, label] of [["created", "Dropped"], ["modified", "Modified"], ["deleted", "Deleted"]]) {
    if (!f[key].length) continue;
    out.push(el("h3", {}, `▤ ${label} files`), table(["name", "size", "sha256"],
      f[key].map((d) => [el("code", {}, d.name || ""), d.size != null ? String(d.size) : "–",
        el("code", { class: "sha" }, d.sha256 || "–")])));
  }
  const n = rep.network;
  if (n.endpoints.length || n.dns.length) {
    const rows = n.endpoints.map((e) => [decision(e.decision), e.syscall, e.proto,
      el("code", {}, e.port != null ? `${e.peer}:${e.port}` : e.peer), String(e.count)]);
    for (const d of n.dns) rows.push([decision(d.decision), "dns", d.type || "", el("code", {}, d.name), String(d.count)]);
    out.push(el("h3", {}, "⇄ Network"), table(["", "call", "proto", "endpoint", "×"], rows));
  }
  if (rep.privileged.length) {
    out.push(el("h3", {}, "⚠ Privileged calls"), table(["", "call", "detail", "×"],
      rep.privileged.map((p) => [decision(p.decision), p.syscall, p.detail || "", String(p.count)])));
  }
  return out;
}

export function renderBehaviour(box, rep, runId) {
  clear(box);
  const c = rep.counts;
  box.append(el("div", { class: "b-head" },
    el("span", {}, `${fmtInt(c.processes)} processes · ${fmtInt(c.signatures)} signatures · ${fmtInt(c.alerts)} denied`),
    el("a", { href: `/api/runs/${runId}/report`, target: "_blank", rel: "noopener" }, "JSON"),
    el("a", { href: `/api/runs/${runId}/report?format=ecs`, download: "", id: "ecs-link" }, "ECS (NDJSON)")));
  box.append(el("h3", {}, "◆ Signatures"), signatures(rep, runId));
  const tree = el("div", { class: "ptree", id: "ptree" });
  for (const node of rep.processes) tree.append(processNode(node, 0));
  box.append(el("h3", {}, "⬢ Process tree"), tree);
  box.append(...filesAndNetwork(rep));
  for (const e of rep.rule_errors || []) {
    box.append(el("p", { class: "muted" }, `rule not loaded: ${e.file}: ${e.reason}`));
  }
}

// Follow the Execution Summary: once it shows a finished run, fetch and render its report.
let shown = "";
async function refresh() {
  const idNode = $("run-id");
  const status = $("run-status");
  const box = $("behaviour-body");
  if (!idNode || !status || !box) return;
  const runId = idNode.textContent;
  const state = [...status.classList].find((k) => k.startsWith("st-"))?.slice(3) || "";
  const key = `${runId}:${state}`;
  if (!DONE.has(state) || key === shown) return;
  shown = key;
  clear(box);
  try {
    // A very large run is analysed on request: the report reads every event.
    const rec = await getJSON(`/api/runs/${runId}`);
    const n = rec.counts?.events ?? 0;
    if (n > AUTO_LIMIT) {
      box.append(el("button", {
        type: "button", class: "btn small", id: "behaviour-load",
        on: { click: () => load(box, runId, key) },
      }, `Analyse ${fmtInt(n)} events`));
      return;
    }
    await load(box, runId, key);
  } catch (err) {
    showError(box, err);
  }
}

async function load(box, runId, key) {
  clear(box);
  box.append(el("p", { class: "muted" }, "Analysing the run…"));
  try {
    const rep = await getJSON(`/api/runs/${runId}/report`);
    if (shown === key) renderBehaviour(box, rep, runId);
  } catch (err) {
    showError(box, err);
  }
}

function showError(box, err) {
  clear(box);
  box.append(el("p", { class: "error" }, err.message, err.hint ? ` — ${err.hint}` : ""));
}

const target = $("summary-body");
if (target) {
  new MutationObserver(() => { refresh(); }).observe(target, { childList: true, subtree: true });
  refresh();
}
