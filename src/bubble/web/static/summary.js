// Execution Summary: how the run ended, what it used, what it left behind, and its ids.
import { clear, el, fmtBytes, fmtInt, fmtMs } from "./dom.js";

const STATUS_TEXT = {
  queued: "Queued", running: "Running", completed: "Completed", timeout: "Timed out",
  failed: "Failed", interrupted: "Interrupted", cancelling: "Cancelling…", cancelled: "Cancelled",
};
const ARTIFACT_ORDER = ["stdout", "stderr", "events"];

function item(label, ...value) {
  return el("div", { class: "kv" }, el("span", { class: "k" }, label), el("span", { class: "v" }, ...value));
}

function exitText(rec) {
  if (rec.signal) return `signal ${rec.signal}`;
  if (rec.exit_code === null || rec.exit_code === undefined) return "–";
  return String(rec.exit_code);
}

function fileList(title, files, rec, describe) {
  if (!files?.length) return null;
  const list = el("ul", { class: "files" });
  const arts = new Set(rec.artifacts.map((a) => a.id));
  for (const f of files) {
    const link = f.artifact_id && arts.has(f.artifact_id)
      ? el("a", { href: `/api/runs/${rec.id}/artifacts/${f.artifact_id}`, download: "" }, "download")
      : null;
    list.append(el("li", {}, el("code", { class: "fname" }, f.name), " ", describe(f), link ? " " : "", link));
  }
  return [el("h3", {}, title), list];
}

function dropped(f) {
  const parts = [el("span", { class: "muted" }, `(${f.kind}${f.size != null ? `, ${fmtBytes(f.size)}` : ""})`)];
  if (f.sha256) parts.push(" ", el("code", { class: "sha", title: "sha256" }, f.sha256));
  if (f.target) parts.push(" → ", el("code", {}, f.target));
  if (f.path2) parts.push(" renamed from ", el("code", {}, f.path2));
  return parts;
}

function deleted(f) {
  return el("span", { class: "muted" }, `(${f.kind}${f.size != null ? `, ${fmtBytes(f.size)} before` : ""})`);
}

/** An upload's original name, sha256 and size, with a download under that name. */
function sampleItem(rec) {
  const s = rec.sample;
  if (!s || s.kind !== "upload") return null;
  return el("div", { class: "sum-row sample", id: "sum-sample" },
    item("Sample:", el("code", { class: "fname" }, s.name),
      el("span", { class: "muted" }, ` (${s.file_type ?? "file"}, ${fmtBytes(s.size)})`)),
    item("sha256:", el("code", { class: "sha", id: "sum-sha" }, s.sha256 ?? "–")),
    rec.upload_id ? el("a", { href: `/api/uploads/${rec.upload_id}`, download: "", class: "sample-dl" }, "download sample") : null);
}

/** What of the output was kept: all of it, or the first `cap` bytes of a stream. */
function artifactLink(art, cap) {
  const capped = cap && (art.kind === "stdout" || art.kind === "stderr") && art.size >= cap;
  return item(`${art.kind}:`, el("a", { href: art.url, download: "", class: "artifact", "data-kind": art.kind },
    `${art.kind === "events" ? "events.ndjson" : `${art.kind}.txt`} (${fmtBytes(art.size)})`),
  capped ? el("span", { class: "muted" }, ` — the first ${fmtBytes(cap)} were kept, the rest dropped`) : null);
}

function modified(f) {
  const sizes = f.size_before != null ? `${fmtBytes(f.size_before)} → ${fmtBytes(f.size_after)}` : fmtBytes(f.size_after);
  const parts = [el("span", { class: "muted" }, `(${f.change === "metadata" ? "mode/owner, " : ""}${sizes})`)];
  if (f.sha256) parts.push(" ", el("code", { class: "sha", title: "sha256 after" }, f.sha256));
  return parts;
}

/** The run's scopes (its policy's `[fs] write` and `[net] connect`), when it has any. */
function scopesRow(rec) {
  const write = rec.policy?.scopes?.fs?.write || [];
  const connect = rec.policy?.scopes?.net?.connect || [];
  if (!write.length && !connect.length) return null;
  const list = el("span", { class: "scope-list", id: "sum-scopes" },
    write.map((d) => el("code", { class: "scope fs", title: "writable at or beneath" }, `✎ ${d}`)),
    connect.map((ep) => el("code", { class: "scope net", title: "may connect to" }, `⇄ ${ep}`)));
  return el("div", { class: "sum-row" }, item("Scopes:", list));
}

/** Keep the summary's badge on the run's status while it runs (the summary itself is drawn
 * from the record, before the first event). */
export function summaryStatus(status) {
  const badge = document.getElementById("run-status");
  if (!badge) return;
  badge.className = `badge st-${status}`;
  badge.textContent = STATUS_TEXT[status] || status;
}

/** Render a run record (GET /api/runs/<id>, or the data of the stream's `end` event). */
export function renderSummary(box, rec, outputCap = 0) {
  clear(box);
  const status = rec.status || "queued";
  const counts = rec.counts || {};
  box.append(el("div", { class: "sum-row" },
    el("span", { class: `badge st-${status}`, id: "run-status" }, STATUS_TEXT[status] || status),
    item("Command:", el("code", { id: "sum-command" }, rec.command_line || "")),
    item("Exit:", el("span", { id: "run-exit" }, exitText(rec))),
    item("Duration:", fmtMs(rec.duration_ms)),
    item("Max RSS:", rec.max_rss_kb != null ? `${fmtInt(rec.max_rss_kb)} KB` : "–"),
    item("Events:", fmtInt(counts.events ?? rec.last_seq)),
    item("Violations:", fmtInt(counts.alerts ?? 0)),
    item("Dropped Files:", fmtInt(rec.dropped_files?.length ?? 0)),
    rec.timed_out ? el("span", { class: "badge st-timeout" }, `timeout ${rec.timeout}s`) : null));
  if (rec.error) {
    box.append(el("p", { class: "error" }, rec.error, rec.hint ? el("span", { class: "muted" }, ` — ${rec.hint}`) : null));
  }
  const scoped = scopesRow(rec);
  if (scoped) box.append(scoped);
  const sample = sampleItem(rec);
  if (sample) box.append(sample);
  box.append(...(fileList("▤ Dropped Files", rec.dropped_files, rec, dropped) || []));
  box.append(...(fileList("✎ Modified Files", rec.modified_files, rec, modified) || []));
  box.append(...(fileList("✗ Deleted Files", rec.deleted_files, rec, deleted) || []));
  const ids = el("div", { class: "sum-row ids" },
    item("Sample ID:", el("code", {}, rec.sample_id || "–")),
    item("Run ID:", el("code", { id: "run-id" }, rec.id)),
    item("Permalink:", el("a", { href: `/runs/${rec.id}`, id: "permalink" }, `/runs/${rec.id}`)));
  const arts = (rec.artifacts || []).filter((a) => ARTIFACT_ORDER.includes(a.kind));
  arts.sort((a, b) => ARTIFACT_ORDER.indexOf(a.kind) - ARTIFACT_ORDER.indexOf(b.kind));
  for (const art of arts) ids.append(artifactLink(art, outputCap));
  box.append(ids);
}
