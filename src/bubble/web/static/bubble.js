// The page: launch form, run history, and routing between `/` and `/runs/<id>`.
import { ApiError, getJSON, postJSON, upload } from "./api.js";
import { $, clear, el, fmtInt, fmtTime } from "./dom.js";
import { RunView } from "./live.js";

const view = new RunView(() => loadHistory());
let nextHistory = null;

function showError(err) {
  const box = $("form-error");
  box.hidden = !err;
  clear(box);
  if (!err) return;
  box.append(err.message || String(err));
  if (err instanceof ApiError && err.hint) box.append(el("span", { class: "muted" }, ` — ${err.hint}`));
}

/** `network`: true (host network), "sim" (the simulated internet inside the wall) or false. */
function networkChoice() {
  if ($("p-net").checked) return true;
  return $("p-netsim").checked ? "sim" : false;
}

/** The policy part of a run request, from the toggles (the seed's body shape). */
function policyBody() {
  const body = {
    permissions: { fs_write: $("p-fswrite").checked, network: networkChoice() },
    notify_exec: $("p-exec").checked,
    pidns: $("p-pidns").checked,
    diagnose: $("p-diag").checked,
  };
  const timeout = Number($("p-timeout").value);
  if ($("p-timeout").value !== "" && timeout > 0) body.timeout = timeout;
  return body;
}

/** Put a run's command and policy back into the form, so a re-run is one click. */
function fillForm(rec) {
  const p = rec.policy || {};
  $("p-fswrite").checked = !!p.permissions?.fs_write;
  $("p-net").checked = p.permissions?.network === true;
  $("p-netsim").checked = p.permissions?.network === "sim";
  $("p-exec").checked = !!p.notify_exec;
  $("p-pidns").checked = !!p.pidns;
  $("p-diag").checked = !!p.diagnose;
  if (rec.timeout) $("p-timeout").value = String(rec.timeout);
  if (!rec.upload_id) $("cmd").value = rec.command_line || "";
}

async function start(body) {
  const buttons = [$("run-btn"), $("upload-btn")];
  buttons.forEach((b) => { b.disabled = true; });
  showError(null);
  try {
    const created = await postJSON("/api/runs", body);
    history.pushState({ id: created.id }, "", `/runs/${created.id}`);
    view.open(created.id, null);
    loadHistory();
  } catch (err) {
    showError(err);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

// Host network and the simulated one exclude each other.
$("p-net").addEventListener("change", () => { if ($("p-net").checked) $("p-netsim").checked = false; });
$("p-netsim").addEventListener("change", () => { if ($("p-netsim").checked) $("p-net").checked = false; });

$("run-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const cmd = $("cmd").value.trim();
  if (!cmd) { showError(new ApiError("enter a command", "e.g. /usr/bin/echo hello")); return; }
  start({ cmd, ...policyBody() });
});

$("upload-btn").addEventListener("click", async () => {
  const file = $("file").files[0];
  if (!file) { showError(new ApiError("choose a file to upload", "or run a command instead")); return; }
  const max = Number(document.body.dataset.maxUpload);
  if (max && file.size > max) { showError(new ApiError("the file is too large", `the limit is ${fmtInt(max)} bytes`)); return; }
  showError(null);
  try {
    const sample = await upload(file);
    const body = { upload_id: sample.id, ...policyBody() };
    if ($("interp").value.trim()) body.interpreter = $("interp").value.trim();
    if ($("args").value.trim()) body.args = $("args").value.trim();
    await start(body);
  } catch (err) {
    showError(err);
  }
});

async function openRun(id) {
  try {
    const rec = await getJSON(`/api/runs/${id}`);
    fillForm(rec);
    view.open(id, rec);
  } catch (err) {
    showError(err);
  }
}

function historyItem(run) {
  const exit = run.signal ? `sig ${run.signal}` : run.exit_code ?? "";
  return el("li", { class: `h-item st-${run.status}`, "data-run": run.id },
    el("a", { href: `/runs/${run.id}`, class: "h-link", on: { click: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      history.pushState({ id: run.id }, "", `/runs/${run.id}`);
      openRun(run.id);
    } } },
      el("span", { class: "h-cmd" }, run.command_line),
      el("span", { class: "h-meta" },
        el("span", { class: `dot st-${run.status}`, title: run.status }),
        `${fmtTime(run.created_at)} · ${run.status}${exit !== "" ? ` · exit ${exit}` : ""}`,
        run.alerts ? ` · ⚠ ${fmtInt(run.alerts)}` : "")));
}

async function loadHistory(more = false) {
  const url = more && nextHistory ? nextHistory : "/api/runs?limit=15";
  try {
    const page = await getJSON(url);
    const list = $("history-list");
    if (!more) clear(list);
    for (const run of page.runs) list.append(historyItem(run));
    if (!page.runs.length && !more) list.append(el("li", { class: "muted" }, "No runs yet."));
    nextHistory = page.next;
    $("history-more").hidden = !nextHistory;
  } catch (err) {
    showError(err);
  }
}

$("history-more").addEventListener("click", () => loadHistory(true));

function route() {
  const m = location.pathname.match(/^\/runs\/([0-9a-f-]{36})$/);
  if (m) openRun(m[1]);
  else {
    view.close();
    view.setLive("idle", "idle");
  }
}

window.addEventListener("popstate", route);
loadHistory();
route();
