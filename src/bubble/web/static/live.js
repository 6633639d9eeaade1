// One run on screen: two EventSource streams (events, output) feed queues that are drained
// once per animation frame within a time budget, so a flood of 100,000 events never
// blocks the page: parsing is spread over frames and only capped DOM work is done.
import { getJSON } from "./api.js";
import { AskCards } from "./ask.js";
import { $, atBottom, fmtBytes } from "./dom.js";
import { EventList } from "./eventlist.js";
import { NetActivity } from "./netpanel.js";
import { SimPanel } from "./simnet.js";
import { renderSummary, summaryStatus } from "./summary.js";
import { Violations } from "./violations.js";

const FRAME_BUDGET_MS = 10;
const OUT_CAP = 256 * 1024; // characters of stdout/stderr kept on screen
const QUEUED_POLL_MS = 1000; // a queued run has no events yet: ask when it starts

export class RunView {
  /** onEnd(record) when a run ends; onStatus(status) whenever its status changes. */
  constructor(onEnd, onStatus) {
    this.onEnd = onEnd;
    this.onStatus = onStatus;
    this.outputCap = Number(document.body.dataset.outputCap) || 0;
    this.net = new NetActivity($("network"), $("net-list"), $("net-more"));
    this.asks = new AskCards($("asks"), $("ask-list"));
    this.violations = new Violations($("vio-list"), $("vio-empty"), $("vio-more"), $("vio-counts"));
    this.events = new EventList($("ev-list"), $("ev-hidden"), $("ev-count"), $("chips"), $("ev-filter"));
    this.sim = new SimPanel($("simnet"));
    this.out = { stdout: $("stdout"), stderr: $("stderr") };
    this.sources = [];
    this.runId = null;
    this.frame = 0;
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => this.showStream(tab.dataset.stream));
    }
  }

  showStream(name) {
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.stream === name);
    this.out.stdout.hidden = name !== "stdout";
    this.out.stderr.hidden = name !== "stderr";
  }

  setLive(state, text) {
    const live = $("live");
    live.className = `live ${state}`;
    live.textContent = text;
  }

  /** The run's status as far as the page knows; "● live" only once it really runs. */
  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    if (!this.done && !this.ended) {
      if (status === "queued") this.setLive("waiting", "queued");
      else if (status === "cancelling") this.setLive("waiting", "cancelling…");
      else if (status === "running" && this.connected) this.setLive("on", "● live");
    }
    if (!this.done) summaryStatus(status);
    if (status === "queued") this.pollQueued();
    this.onStatus?.(status);
  }

  pollQueued() {
    clearTimeout(this.poll);
    const id = this.runId;
    this.poll = setTimeout(async () => {
      if (id !== this.runId || this.status !== "queued") return;
      try {
        const rec = await getJSON(`/api/runs/${id}`);
        if (id === this.runId && !this.done) this.setStatus(rec.status);
      } catch { /* the event stream reports a lost server */ }
      if (id === this.runId && this.status === "queued") this.pollQueued();
    }, QUEUED_POLL_MS);
  }

  close() {
    clearTimeout(this.poll);
    for (const src of this.sources) src.close();
    this.sources = [];
    cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  /** Show run `id`: everything stored so far, then live until the run ends. */
  open(id, record) {
    this.close();
    this.runId = id;
    // The streams first: connecting is the slow part (a new request to the server while it
    // starts the run), and no message is handled before this function has reset the view.
    this.connect(id);
    this.queue = [];
    this.head = 0;
    this.text = { stdout: "", stderr: "" };
    this.outDirty = false;
    this.ended = null;
    this.done = false;
    this.connected = false;
    this.status = null;
    document.body.dataset.runState = "live";
    this.asks.reset(id);
    this.violations.reset();
    this.net.reset();
    this.events.reset();
    this.sim.reset(id);
    for (const pre of Object.values(this.out)) pre.textContent = "";
    $("stderr-size").textContent = "";
    $("out-note").hidden = true;
    this.showStream("stdout");
    if (record) renderSummary($("summary-body"), record, this.outputCap);
    this.setLive("waiting", "connecting…");
    this.setStatus(record?.status ?? "queued");
  }

  /** The run's two streams; their handlers feed the view that `open` resets. */
  connect(id) {
    // Batches: one message per group of events that are ready together (a flood), so
    // the browser's per-message cost is paid once per batch, not once per event.
    const events = new EventSource(`/api/runs/${id}/events?batch=500`);
    events.onopen = () => {
      this.connected = true;
      if (this.ended || this.done) return;
      const waiting = { queued: "queued", cancelling: "cancelling…" }[this.status];
      if (this.status === "running") this.setLive("on", "● live");
      else this.setLive("waiting", waiting ?? "loading…");
    };
    events.addEventListener("events", (msg) => {
      if (this.status === "queued") this.setStatus("running");
      for (const line of msg.data.split("\n")) this.queue.push(line);
      this.schedule();
    });
    events.addEventListener("end", (msg) => {
      events.close();
      this.ended = JSON.parse(msg.data);
      this.schedule();
    });
    events.onerror = () => { if (!this.ended && !this.done) this.setLive("waiting", "reconnecting…"); };

    const output = new EventSource(`/api/runs/${id}/output`);
    for (const name of ["stdout", "stderr"]) {
      output.addEventListener(name, (msg) => {
        this.text[name] += JSON.parse(msg.data).text;
        if (this.text[name].length > 2 * OUT_CAP) this.trim(name);
        this.outDirty = true;
        this.schedule();
      });
    }
    output.addEventListener("end", () => output.close());
    this.sources = [events, output];
  }

  trim(name) {
    this.text[name] = this.text[name].slice(-OUT_CAP);
    const note = $("out-note");
    note.hidden = false;
    const kept = this.outputCap ? `up to its first ${fmtBytes(this.outputCap)}` : "what was kept";
    note.textContent = `Showing the last ${fmtBytes(OUT_CAP)} of ${name} here; ` +
      `the ${name} artifact in the summary holds ${kept}.`;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.pump());
  }

  pump() {
    this.frame = 0;
    const start = performance.now();
    const q = this.queue;
    while (this.head < q.length && performance.now() - start < FRAME_BUDGET_MS) {
      const stop = Math.min(q.length, this.head + 256);
      for (; this.head < stop; this.head += 1) this.ingest(q[this.head]);
    }
    if (this.head >= q.length) { this.queue = []; this.head = 0; }
    this.violations.flush();
    this.net.flush();
    this.events.flush();
    this.sim.flush();
    if (this.outDirty) this.flushOutput();
    if (this.queue.length || this.events.behind) this.schedule();
    else if (this.ended) this.finish();
  }

  ingest(raw) {
    let ev;
    try { ev = JSON.parse(raw); } catch { return; }
    this.events.add(raw, ev);
    if (ev.type === "policy.ask") this.asks.add(ev);
    else if (ev.type === "policy.allow" || ev.type === "policy.alert") this.asks.settle(ev);
    if (ev.type === "policy.alert") this.violations.add(ev);
    else if (ev.type === "net.dns" || ev.type === "net.capture") this.sim.add(ev);
    else if (typeof ev.type === "string" && ev.type.startsWith("net.")) {
      this.net.add(ev);
      this.sim.add(ev); // endpoints contacted, named by our DNS when it answered
    }
  }

  flushOutput() {
    this.outDirty = false;
    for (const [name, pre] of Object.entries(this.out)) {
      const text = this.text[name].length > OUT_CAP ? this.text[name].slice(-OUT_CAP) : this.text[name];
      if (pre.textContent.length === text.length && pre.textContent === text) continue;
      const tail = atBottom(pre);
      pre.textContent = text;
      if (tail) pre.scrollTop = pre.scrollHeight;
    }
    $("stderr-size").textContent = this.text.stderr ? `(${fmtBytes(this.text.stderr.length)})` : "";
  }

  finish() {
    const record = this.ended;
    this.ended = null;
    this.done = true;
    clearTimeout(this.poll);
    this.asks.end();
    renderSummary($("summary-body"), record, this.outputCap);
    this.setLive(`ended st-${record.status}`, `ended · ${record.status}`);
    document.body.dataset.runState = "ended";
    this.setStatus(record.status);
    this.onEnd?.(record);
  }
}
