// DOM helpers. Every string goes in as text (textContent / text nodes), never as HTML:
// event fields, paths, stdout and command lines are controlled by the sandboxed program.

/** Create an element. props: {class, title, href, ...attributes, on: {event: handler}}. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key === "hidden") node.hidden = true;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) append(node, child);
  return node;
}

/** Append a node, a string (as a text node) or an array of those. */
export function append(node, child) {
  if (child === undefined || child === null || child === false) return;
  if (Array.isArray(child)) child.forEach((c) => append(node, c));
  else if (child instanceof Node) node.appendChild(child);
  else node.appendChild(document.createTextNode(String(child)));
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export const $ = (id) => document.getElementById(id);

/** Show an error (its message, and its hint when it has one) in `box`; null hides the box. */
export function showErrorIn(box, err) {
  box.hidden = !err;
  clear(box);
  if (!err) return;
  box.append(err.message || String(err));
  if (err.hint) box.append(el("span", { class: "muted" }, ` — ${err.hint}`));
}

/** "2026-11-28T17:10:52.150Z" -> "17:10:52.150" in local time. */
export function fmtTime(ts) {
  if (typeof ts !== "string") return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtBytes(n) {
  if (typeof n !== "number") return "–";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtMs(ms) {
  if (typeof ms !== "number") return "–";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

export const fmtInt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");

/** True if a scrollable box is (nearly) scrolled to its bottom: keep tailing then. */
export const atBottom = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 24;
