// The phone's outbox: check-ins and check-outs queued in IndexedDB, chained by SHA-256.
// Record = {seq, prev, payload, hash}: payload is the step's JSON text as queued, prev the hash
// of the record queued before it, hash = SHA-256(prev + "\n" + payload) in lower-case hex
// (the rule in services/dispatch/domain/sync_chain.py). The head (last hash) outlives the
// records, so the chain continues across syncs.
export const GENESIS = "0".repeat(64);
const DB_NAME = "homecare-caregiver";

let dbPromise = null;

function db() {
  dbPromise ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore("queue", { keyPath: "seq", autoIncrement: true });
      request.result.createObjectStore("meta");
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return dbPromise;
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

export async function sha256hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function getMeta(key) {
  return done((await db()).transaction("meta").objectStore("meta").get(key));
}

export async function setMeta(key, value) {
  const tx = (await db()).transaction("meta", "readwrite");
  tx.objectStore("meta").put(value, key);
  return finished(tx);
}

export async function deviceId() {
  let id = await getMeta("device_id");
  if (!id) {
    id = `D-${crypto.randomUUID()}`;
    await setMeta("device_id", id);
  }
  return id;
}

// Appends are serialised: hashing is async, and two taps (or two tabs) must not both follow
// the same head. Web Locks span the tabs of this origin; the promise chain is the fallback.
let appending = Promise.resolve();

export function exclusive(name, work) {
  if (navigator.locks) return navigator.locks.request(name, work);
  const next = appending.then(work);
  appending = next.catch(() => undefined);
  return next;
}

export function enqueue(step) {
  return exclusive("caregiver-queue", async () => {
    const prev = (await getMeta("head")) || GENESIS;
    const payload = JSON.stringify(step);
    const hash = await sha256hex(`${prev}\n${payload}`);
    const tx = (await db()).transaction(["queue", "meta"], "readwrite");
    const record = { prev, payload, hash, queued_at: new Date().toISOString() };
    tx.objectStore("queue").add(record);
    tx.objectStore("meta").put(hash, "head");
    await finished(tx);
    return record;
  });
}

export async function pending() {
  return done((await db()).transaction("queue").objectStore("queue").getAll());
}

export async function remove(seqs) {
  if (!seqs.length) return;
  const tx = (await db()).transaction("queue", "readwrite");
  for (const seq of seqs) tx.objectStore("queue").delete(seq);
  return finished(tx);
}
