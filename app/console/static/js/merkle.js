// Checking a proof in the browser: the RFC 6962/9162 inclusion proof's root (SHA-256 through WebCrypto),
// and the checkpoint's C2SP signed-note signature (Ed25519 through WebCrypto) against the published keys.
// Both need a secure context (HTTPS or localhost); elsewhere the page says it cannot check.

const DASH = "\u2014 ";
const enc = new TextEncoder();

export function b64decode(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function b64encode(bytes) {
  return btoa(String.fromCharCode(...bytes));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export const canVerify = () => Boolean(globalThis.crypto && crypto.subtle);

/** The root an inclusion proof leads to (RFC 9162 section 2.1.3.2), or throws when the proof is malformed. */
export async function rootFromInclusion(index, size, leafHash, proof) {
  if (index >= size) throw new Error("leaf index is outside the tree");
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) throw new Error("proof is longer than the tree is deep");
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat(Uint8Array.of(1), p, r));
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await sha256(concat(Uint8Array.of(1), r, p));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("proof is shorter than the tree is deep");
  return r;
}

/** {origin, size, root (bytes), text (signed body), signatures: [{name, keyHash, sig}]} of a signed note. */
export function parseCheckpoint(signed) {
  const at = signed.lastIndexOf("\n\n");
  if (at < 0) throw new Error("not a signed note");
  const text = signed.slice(0, at + 1);
  const [origin, size, root] = text.split("\n");
  const signatures = signed.slice(at + 2).split("\n").filter(Boolean).map((line) => {
    if (!line.startsWith(DASH)) throw new Error("malformed signature line");
    const [name, sig] = line.slice(DASH.length).split(" ");
    const raw = b64decode(sig);
    return { name, keyHash: raw.slice(0, 4), sig: raw.slice(4) };
  });
  return { origin, size: Number(size), root: b64decode(root), text, signatures };
}

/** The verifier keys of /.well-known/auditlog/checkpoint-key: [{name, keyHash, publicKey}]. */
export function parseKeys(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const first = line.indexOf("+"); // the name and hash hold no '+'; the base64 key may
    const second = line.indexOf("+", first + 1);
    const name = line.slice(0, first);
    const hash = line.slice(first + 1, second);
    const raw = b64decode(line.slice(second + 1));
    const keyHash = Uint8Array.from((hash.match(/../g) || []).map((x) => parseInt(x, 16)));
    return { name, keyHash, publicKey: raw.slice(1), line };
  });
}

const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The name of the key whose signature on the note verifies, or null. */
export async function verifyNote(note, keys) {
  for (const sig of note.signatures) {
    for (const key of keys) {
      if (key.name !== sig.name || !equal(key.keyHash, sig.keyHash)) continue;
      const imported = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
      if (await crypto.subtle.verify({ name: "Ed25519" }, imported, sig.sig, enc.encode(note.text))) return key.name;
    }
  }
  return null;
}

export { equal };
