// Verify: the latest signed checkpoint (GET /api/v1/checkpoints/latest), and for one event its inclusion
// proof (GET /api/v1/logs/{id}/proof) checked here in the browser: the audit path must lead from the leaf
// hash to the checkpoint's root, and the checkpoint's signature must verify under a key published at
// /.well-known/auditlog/checkpoint-key. The leaf hash itself is recomputed from the stored event only by
// the offline verifier (`auditlog verify` over an export with proofs).

import * as api from "../api.js";
import { field, h, problemText } from "../dom.js";
import { b64decode, b64encode, canVerify, equal, parseCheckpoint, parseKeys, rootFromInclusion, verifyNote } from "../merkle.js";

function line(label, value, ok) {
  return [h("dt", {}, label), h("dd", { class: ok === true ? "ok" : ok === false ? "error" : "" }, value)];
}

async function keys() {
  const response = await fetch("/.well-known/auditlog/checkpoint-key");
  if (!response.ok) throw new Error(`checkpoint keys unavailable (HTTP ${response.status})`);
  return parseKeys(await response.text());
}

async function checkpointView(cp) {
  const note = parseCheckpoint(cp.checkpoint);
  let signer = null;
  let why = "";
  if (canVerify()) {
    try {
      signer = await verifyNote(note, await keys());
    } catch (err) {
      why = String(err.message || err);
    }
  } else {
    why = "this browser cannot check signatures here (it needs HTTPS)";
  }
  return h("section", { "aria-labelledby": "cp-title" },
    h("h2", { id: "cp-title" }, "Latest checkpoint"),
    h("dl", { class: "fields", "data-testid": "checkpoint" },
      line("Origin", note.origin),
      line("Tree size", String(cp.tree_size)),
      line("Root hash", h("code", {}, cp.root_hash)),
      line("Signature", signer ? `verified (key ${signer})` : `not verified${why ? `: ${why}` : ""}`, Boolean(signer))),
    h("pre", {}, cp.checkpoint));
}

async function proofView(id, latest) {
  const proof = await api.api(`/api/v1/logs/${encodeURIComponent(id)}/proof`);
  const note = parseCheckpoint(proof.checkpoint);
  let rootOk = null;
  let why = "";
  let signer = null;
  if (canVerify()) {
    try {
      const root = await rootFromInclusion(proof.leaf_index, proof.tree_size, b64decode(proof.leaf_hash), proof.hashes.map(b64decode));
      rootOk = equal(root, note.root) && note.size === proof.tree_size;
      if (!rootOk) why = `the path leads to ${b64encode(root)}`;
      signer = await verifyNote(note, await keys());
    } catch (err) {
      rootOk = false;
      why = String(err.message || err);
    }
  } else {
    why = "this browser cannot compute SHA-256 here (it needs HTTPS)";
  }
  const verdict = rootOk && signer
    ? "Included: the proof leads to the root of a checkpoint signed by a published key."
    : `Not verified${why ? `: ${why}` : ""}`;
  return h("section", { "aria-labelledby": "proof-title" },
    h("h2", { id: "proof-title" }, `Inclusion proof of event ${id}`),
    h("p", { class: rootOk && signer ? "ok" : "error", role: "status", "data-testid": "verdict" }, verdict),
    h("dl", { class: "fields" },
      line("Leaf index", String(proof.leaf_index)),
      line("Tree size", `${proof.tree_size}${latest && latest.tree_size === proof.tree_size ? " (the latest checkpoint)" : ""}`),
      line("Leaf hash", h("code", {}, proof.leaf_hash)),
      line("Audit path", `${proof.hashes.length} hashes`),
      line("Root from path", rootOk === null ? "not computed" : rootOk ? "matches the checkpoint" : "does not match", rootOk),
      line("Checkpoint signature", signer ? `verified (key ${signer})` : "not verified", Boolean(signer))),
    h("details", {}, h("summary", {}, "Audit path hashes"), h("pre", {}, proof.hashes.join("\n") || "(none: a one-leaf tree)")));
}

export function mount(main, [id]) {
  const out = h("div", { "aria-live": "polite" });
  const input = field("Event id", { name: "event_id", value: id || "", size: 40, autocomplete: "off" });
  const form = h("form", { class: "row" }, input, h("button", { type: "submit" }, "Verify event"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = input.querySelector("input").value.trim();
    if (value) location.hash = `#/verify/${encodeURIComponent(value)}`;
  });
  main.append(h("h1", {}, "Verify"), h("p", { class: "muted" },
    "Checks, in this browser, that an event is in the tenant's signed append-only log."), form, out);
  (async () => {
    let latest = null;
    try {
      latest = await api.api("/api/v1/checkpoints/latest");
      out.append(await checkpointView(latest));
    } catch (err) {
      out.append(h("p", { class: "error", role: "alert" }, `No checkpoint: ${problemText(err)}`));
    }
    if (id) {
      try {
        out.prepend(await proofView(id, latest));
      } catch (err) {
        const text = err.status === 404 ? "This event is not in a signed checkpoint yet (or does not exist); try again in a moment." : problemText(err);
        out.prepend(h("p", { class: "error", role: "alert", "data-testid": "verdict" }, text));
      }
    }
  })();
}
