// "Suggest a policy" after a run: GET /api/runs/<id>/policy/suggest gives the smallest
// scoped policy that would have allowed what the run was denied, as a commented policy file.
// The analyst edits it in place and re-runs the same command or sample, with the same
// toggles, under it; a policy the server refuses is shown next to the text, nothing starts.
import { getJSON } from "./api.js";
import { $, clear, el, showErrorIn } from "./dom.js";

export class SuggestPanel {
  /** onRerun(policyText, showError) starts the re-run; it resolves true when one started. */
  constructor(onRerun) {
    this.onRerun = onRerun;
    this.runId = null;
    $("suggest-btn").addEventListener("click", () => this.suggest());
    $("suggest-rerun").addEventListener("click", () => this.rerun());
  }

  /** Show the panel for run `id` (only once it ended: a run in flight is not the whole story). */
  show(id, done) {
    if (id !== this.runId) this.reset(id);
    $("leastpriv").hidden = !done;
  }

  reset(id) {
    this.runId = id;
    $("suggest-box").hidden = true;
    $("suggest-btn").textContent = "Suggest a policy";
    $("suggest-text").value = "";
    clear($("suggest-notes"));
    this.error(null);
  }

  error(err) {
    showErrorIn($("suggest-error"), err);
  }

  async suggest() {
    const id = this.runId;
    $("suggest-btn").disabled = true;
    $("suggest-btn").textContent = "Suggesting…"; // a 100,000-event run takes seconds
    this.error(null);
    try {
      const found = await getJSON(`/api/runs/${id}/policy/suggest`);
      if (id !== this.runId) return;
      $("suggest-text").value = found.toml;
      $("suggest-box").hidden = false;
      const notes = $("suggest-notes");
      clear(notes);
      notes.append(found.scopes
        ? `${found.scopes} scope${found.scopes === 1 ? "" : "s"} would have allowed what was denied. ` +
          "Edit the policy if you like, then re-run under it."
        : "Nothing this run was denied can be allowed by a scope: there is nothing to suggest.");
      if (found.unscoped.length) {
        notes.append(el("span", { class: "muted" },
          ` ${found.unscoped.length} denied call${found.unscoped.length === 1 ? "" : "s"} no scope allows (listed as comments).`));
      }
      $("suggest-text").focus();
    } catch (err) {
      this.error(err);
    } finally {
      $("suggest-btn").disabled = false;
      $("suggest-btn").textContent = $("suggest-box").hidden ? "Suggest a policy" : "Suggest again";
    }
  }

  async rerun() {
    $("suggest-rerun").disabled = true;
    this.error(null);
    try {
      await this.onRerun($("suggest-text").value, (err) => this.error(err));
    } finally {
      $("suggest-rerun").disabled = false;
    }
  }
}
