// The page: launch form, run bar (status, Cancel, Re-run), run history, and routing between
// `/` and `/runs/<id>`. Opening a run loads its command or sample and its whole policy into
// the form, so a re-run with another policy is a change and one click, never a new pick.
import { ApiError, deleteJSON, getJSON, postJSON, upload } from "./api.js";
import { compare } from "./compare.js";
import { $, clear, el, fmtInt, fmtTime, showErrorIn } from "./dom.js";
import { RunView } from "./live.js";
import { blankToml, scopesToml } from "./scopes.js";
import { SuggestPanel } from "./suggest.js";

const DEFAULT_TITLE = "Project Bubble — Sandbox Runner";
const LIVE = new Set(["queued", "running", "cancelling"]);
const view = new RunView((rec) => { showRecord(rec); loadHistory(); }, (status) => {
  showStatus(status);
  if (status === "running") loadHistory(); // its history entry said "queued"
});
let nextHistory = null;
let loadedSample = null; // {id, name, sha256} of an upload loaded from a run: re-run it without a pick
let current = null; // {id, status, what} of the run on screen
let currentRec = null; // the full record of the run on screen, once known (its `rerun` body)
let traceTouched = false; // the user set "Trace allowed network" themselves

const showError = (err) => showErrorIn($("form-error"), err);

/** `fs_write`: false, "overlay" (a throwaway layer) or true (the real host). */
function fsWrite() {
  if (!$("p-fswrite").checked) return false;
  return $("p-layer").checked ? "overlay" : true;
}

function showLayer() {
  $("p-layer").disabled = !$("p-fswrite").checked;
}
$("p-fswrite").addEventListener("change", showLayer);
$("p-layer").addEventListener("change", showLayer);
showLayer();

/** A word list as a shell would read it back (for the args field). */
function shellJoin(words) {
  return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'"'"'`)}'`)).join(" ");
}

/** The policy part of a run request, from the toggles (the seed's body shape). Throws an
 * ApiError for a value the server would refuse, so nothing is uploaded in vain. */
function policyBody() {
  const net = $("p-net").checked;
  const body = {
    // network: true (host network), "sim" (the simulated internet inside the wall), false
    permissions: { fs_write: fsWrite(), network: net || ($("p-netsim").checked ? "sim" : false) },
    notify_exec: $("p-exec").checked,
    pidns: $("p-pidns").checked,
    diagnose: $("p-diag").checked,
  };
  if ($("p-ask").checked) {
    body.ask = true;
    const wait = Number($("p-ask-timeout").value || "60");
    if (!(wait > 0)) throw new ApiError("the ask wait must be a positive number of seconds", "e.g. 60");
    body.ask_timeout = wait;
  }
  if (net && $("p-trace").checked) {
    body.trace_net = true;
    const peek = Number($("p-peek").value || "0");
    if (!Number.isInteger(peek) || peek < 0 || peek > 512) {
      throw new ApiError("peek must be a whole number of bytes from 0 to 512", "e.g. 64, or 0 for none");
    }
    if (peek) body.peek_tx = peek;
  }
  const scopes = $("p-scopes").value;
  if (!blankToml(scopes)) body.policy = scopes; // the server parses it, strictly (web/vocab.py)
  const raw = $("p-timeout").value.trim();
  const max = Number(document.body.dataset.maxTimeout);
  if (raw === "" && $("p-timeout").validity.badInput) {
    throw new ApiError("the timeout is not a number", `give seconds, e.g. 8 (at most ${max})`);
  }
  if (raw !== "") {
    const timeout = Number(raw);
    if (!(timeout > 0)) throw new ApiError(`the timeout must be a positive number of seconds, not ${raw}`, `e.g. 8 (at most ${max})`);
    body.timeout = timeout;
  }
  return body;
}

/** Trace follows "Allow Network": on by default when allowed, impossible when denied. */
function netToggles() {
  const net = $("p-net").checked;
  $("p-trace").disabled = !net;
  if (!net) $("p-trace").checked = false;
  else if (!traceTouched) $("p-trace").checked = true;
  $("p-peek").disabled = !(net && $("p-trace").checked);
}

function loadSample(sample) {
  loadedSample = sample;
  $("sample-row").hidden = !sample;
  $("sample-name").textContent = sample ? sample.name : "";
  $("sample-sha").textContent = sample?.sha256 ? `sha256 ${sample.sha256}` : "";
  uploadLabel();
}

function uploadLabel() {
  const again = loadedSample && !$("file").files.length;
  $("upload-btn").textContent = again ? "▶ Run Sample Again" : "⬆ Upload & Run";
}

/** The scopes' summary next to the collapsed box, so a scoped form is never a surprise. */
function scopesSummary() {
  const text = $("p-scopes").value;
  $("p-scopes-sum").textContent = blankToml(text) ? "" : "● scoped";
}
$("p-scopes").addEventListener("input", scopesSummary);

/** Put a run's command or sample and its whole policy into the form: its `rerun` body, the
 * request's own words (web/vocab.py writes them), so the form reads what a re-run posts. */
function fillForm(rec) {
  const body = rec.rerun || {};
  const perms = body.permissions || {};
  $("p-fswrite").checked = !!perms.fs_write;
  $("p-layer").checked = perms.fs_write !== true;
  showLayer();
  $("p-net").checked = perms.network === true;
  $("p-netsim").checked = perms.network === "sim";
  $("p-exec").checked = !!body.notify_exec;
  $("p-pidns").checked = !!body.pidns;
  $("p-diag").checked = !!body.diagnose;
  $("p-ask").checked = !!body.ask;
  if (body.ask_timeout) $("p-ask-timeout").value = String(body.ask_timeout);
  traceTouched = true; // the run's own choice, kept as it was
  $("p-trace").checked = !!body.trace_net;
  $("p-peek").value = String(body.peek_tx || 0);
  netToggles();
  if (body.timeout) $("p-timeout").value = String(body.timeout);
  $("p-scopes").value = typeof body.policy === "string" ? body.policy : scopesToml(body.policy);
  $("p-scopes-box").open = !blankToml($("p-scopes").value);
  scopesSummary();
  $("file").value = "";
  if (body.upload_id && rec.sample) {
    $("cmd").value = "";
    $("interp").value = shellJoin(body.interpreter || []);
    $("args").value = shellJoin(body.args || []);
    loadSample({ id: body.upload_id, name: rec.sample.name, sha256: rec.sample.sha256 });
  } else {
    $("cmd").value = body.cmd ?? rec.command_line ?? "";
    $("interp").value = "";
    $("args").value = "";
    loadSample(null);
  }
}

function whatOf(rec) {
  if (rec.sample?.kind === "upload") return `${rec.sample.name} (${(rec.sample.sha256 || "").slice(0, 12)})`;
  return rec.command_line || "";
}

/** The run bar: what is on screen, its status, Cancel while it runs, Re-run after. */
function showStatus(status) {
  if (!current) return;
  current.status = status;
  $("runbar").hidden = false;
  const badge = $("bar-status");
  badge.className = `badge st-${status}`;
  badge.textContent = status;
  $("cancel-btn").hidden = !(status === "queued" || status === "running");
  $("rerun-btn").hidden = LIVE.has(status);
  $("compare-btn").hidden = LIVE.has(status);
  if (LIVE.has(status)) picking(false);
  suggestions.show(current.id, !LIVE.has(status));
  document.title = `${current.what.slice(0, 80)} · ${status} — Bubble`;
}

function showRecord(rec) {
  if (rec.id !== currentRec?.id || rec.rerun) currentRec = rec.rerun ? rec : null;
  current = { id: rec.id, status: rec.status, what: whatOf(rec) };
  markCurrent();
  $("bar-what").textContent = current.what;
  $("bar-what").title = current.what;
  const c = rec.counts || {};
  const exit = rec.signal ? `signal ${rec.signal}` : rec.exit_code ?? null;
  $("bar-counts").textContent = rec.done
    ? `${exit !== null ? `exit ${exit} · ` : ""}${fmtInt(c.events ?? 0)} events · ⚠ ${fmtInt(c.alerts ?? 0)}`
    : "";
  showStatus(rec.status);
}

/** Post a run and show it; `onError` shows a refusal (the form's box unless told). Resolves
 * true when the run was created. */
async function start(body, what, onError = showError) {
  const buttons = [$("run-btn"), $("upload-btn"), $("rerun-btn")];
  buttons.forEach((b) => { b.disabled = true; });
  showError(null);
  try {
    const created = await postJSON("/api/runs", body);
    history.pushState({ id: created.id }, "", `/runs/${created.id}`);
    showRecord({ id: created.id, status: created.status, command_line: what });
    view.open(created.id, { id: created.id, status: created.status, command_line: what });
    loadHistory();
    return true;
  } catch (err) {
    onError(err);
    return false;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

/** "Re-run with this policy": the run on screen's own body (command or sample, toggles,
 * timeout) with the edited policy text; the form then shows what ran. */
async function rerunWithPolicy(text, onError) {
  const rec = currentRec;
  if (!rec?.rerun) { onError(new ApiError("the run is still loading", "try again in a moment")); return; }
  const body = { ...rec.rerun };
  delete body.policy;
  if (!blankToml(text)) body.policy = text;
  if (await start(body, whatOf(rec), onError)) fillForm({ ...rec, rerun: body });
}
const suggestions = new SuggestPanel(rerunWithPolicy);

/** Compare mode: the next run picked in the history is compared with the one on screen. */
function picking(on) {
  if (on) document.body.dataset.picking = "";
  else delete document.body.dataset.picking;
  $("pick-hint").hidden = !on;
  $("compare-btn").setAttribute("aria-pressed", String(on));
}
$("compare-btn").addEventListener("click", () => picking(!("picking" in document.body.dataset)));
$("pick-cancel").addEventListener("click", () => picking(false));
document.addEventListener("keydown", (e) => { if (e.key === "Escape") picking(false); });
$("compare-close").addEventListener("click", () => { $("compare").hidden = true; });

function markCurrent() {
  for (const li of document.querySelectorAll("#history-list .h-item")) {
    li.classList.toggle("current", li.dataset.run === current?.id);
  }
}

function runCommand() {
  const cmd = $("cmd").value.trim();
  if (!cmd) { showError(new ApiError("enter a command", "e.g. /usr/bin/echo hello")); return; }
  let policy;
  try { policy = policyBody(); } catch (err) { showError(err); return; }
  start({ cmd, ...policy }, cmd);
}

async function runUpload() {
  const file = $("file").files[0];
  if (!file && !loadedSample) { showError(new ApiError("choose a file to upload", "or run a command instead")); return; }
  const max = Number(document.body.dataset.maxUpload);
  if (file && max && file.size > max) { showError(new ApiError("the file is too large", `the limit is ${fmtInt(max)} bytes`)); return; }
  showError(null);
  try {
    const policy = policyBody();
    const sample = file ? await upload(file) : loadedSample;
    if (file) loadSample({ id: sample.id, name: sample.name, sha256: sample.sha256 });
    $("file").value = "";
    uploadLabel();
    const body = { upload_id: sample.id, ...policy };
    if ($("interp").value.trim()) body.interpreter = $("interp").value.trim();
    if ($("args").value.trim()) body.args = $("args").value.trim();
    await start(body, `${sample.name} (${(sample.sha256 || "").slice(0, 12)})`);
  } catch (err) {
    showError(err);
  }
}

$("run-form").addEventListener("submit", (e) => { e.preventDefault(); runCommand(); });
$("upload-btn").addEventListener("click", runUpload);
$("file").addEventListener("change", uploadLabel);
$("sample-clear").addEventListener("click", () => loadSample(null));
$("p-net").addEventListener("change", netToggles);
// Host network and the simulated one exclude each other.
$("p-net").addEventListener("change", () => { if ($("p-net").checked) $("p-netsim").checked = false; });
$("p-netsim").addEventListener("change", () => {
  if ($("p-netsim").checked && $("p-net").checked) { $("p-net").checked = false; netToggles(); }
});
$("p-trace").addEventListener("change", () => { traceTouched = true; netToggles(); });
$("rerun-btn").addEventListener("click", () => (loadedSample ? runUpload() : runCommand()));
$("cancel-btn").addEventListener("click", async () => {
  if (!current) return;
  $("cancel-btn").disabled = true;
  try {
    const answer = await deleteJSON(`/api/runs/${current.id}`);
    view.setStatus(answer.status);
  } catch (err) {
    showError(err);
  } finally {
    $("cancel-btn").disabled = false;
  }
});

async function openRun(id) {
  $("compare").hidden = true;
  picking(false);
  try {
    const rec = await getJSON(`/api/runs/${id}`);
    showError(null);
    fillForm(rec);
    showRecord(rec);
    view.open(id, rec);
  } catch (err) {
    showError(err);
  }
}

function historyItem(run) {
  const exit = run.signal ? `sig ${run.signal}` : run.exit_code ?? "";
  const sample = run.sample;
  return el("li", { class: `h-item st-${run.status}`, "data-run": run.id },
    el("a", { href: `/runs/${run.id}`, class: "h-link", on: { click: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      if ("picking" in document.body.dataset) {
        if (!current || run.id === current.id) return; // a run compared with itself says nothing
        picking(false);
        compare(current.id, run.id);
        return;
      }
      history.pushState({ id: run.id }, "", `/runs/${run.id}`);
      openRun(run.id);
    } } },
      el("span", { class: "h-cmd", title: run.command_line }, sample ? `⬆ ${sample.name}` : run.command_line),
      sample ? el("span", { class: "h-sha", title: `sha256 ${sample.sha256}` }, `sha256 ${sample.sha256.slice(0, 16)}…`) : null,
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
    markCurrent();
    if (!page.runs.length && !more) list.append(el("li", { class: "muted" }, "No runs yet."));
    nextHistory = page.next;
    $("history-more").hidden = !nextHistory;
  } catch (err) {
    showError(err);
  }
}

$("history-more").addEventListener("click", () => loadHistory(true));

function route() {
  const missing = document.body.dataset.missing;
  $("missing").hidden = true;
  const m = location.pathname.match(/^\/runs\/([0-9a-f-]{36})$/);
  if (missing && location.pathname === `/runs/${missing}`) {
    $("missing").hidden = false;
    $("missing").textContent = `There is no run ${missing}: it may have been deleted, or the link ` +
      "is mistyped. Pick one from the history, or start a new run.";
    view.close();
  } else if (m) openRun(m[1]);
  else {
    view.close();
    view.setLive("idle", "idle");
    current = null;
    currentRec = null;
    picking(false);
    $("leastpriv").hidden = true;
    $("compare").hidden = true;
    $("runbar").hidden = true;
    document.title = DEFAULT_TITLE;
  }
}

window.addEventListener("popstate", route);
netToggles();
loadHistory();
route();
