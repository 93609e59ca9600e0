// The caregiver page: sign in, today's route, check in / check out through the phone's queue.
// Every step goes into the chained queue first and is sent at once when there is a network,
// so online and offline steps take the same path (POST /dispatch/sync).
import { drawMap } from "./map.js";
import { deviceId, enqueue, exclusive, getMeta, pending, remove, setMeta } from "./queue.js";
import { label, lang, setLang, t } from "./i18n.js";

const TZ = "Asia/Shanghai"; // the area's local time; the route may say otherwise
// Log-in (/auth/login.js, cached by the service worker): every request carries the token; a
// 401 asks for user name and password and sends the request again. Without it (a server that
// does not check callers) the page works as before.
const auth = window.homecareAuth ?? { fetch: (url, options) => fetch(url, options),
  streamUrl: (url) => url, claims: () => null, logout() {}, login: async () => null };
const $ = (selector) => document.querySelector(selector);
const state = { caregiverId: localStorage.getItem("caregiver_id"), route: null, savedAt: null,
  queue: [], syncing: null, resync: false, blocked: null, skew: 0, rejected: [],
  drafts: {} }; // drafts: what the caregiver has typed per visit, kept across re-renders

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

function today(tz) {
  const param = new URLSearchParams(location.search).get("date");
  if (param && /^\d{4}-\d{2}-\d{2}$/.test(param)) return param;
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit",
    day: "2-digit" }).format(new Date());
}

function clock(iso, tz) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(lang() === "zh" ? "zh-CN" : "en-GB", { timeZone: tz,
    hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
}

// Route --------------------------------------------------------------------------------------
// Minutes the phone's clock is off from the server's (the server refuses times in the future).
function checkClock(response) {
  const served = Date.parse(response.headers.get("Date") || "");
  if (response.headers.has("X-Served-From-Cache") || Number.isNaN(served)) return;
  const minutes = Math.round((Date.now() - served) / 60000);
  state.skew = Math.abs(minutes) >= 2 ? minutes : 0;
}

async function getJSON(url) {
  const response = await auth.fetch(url, { headers: { Accept: "application/json" } });
  checkClock(response);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `HTTP ${response.status}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  const cached = response.headers.get("X-Served-From-Cache");
  if (cached) Object.defineProperty(body, "savedAt", { value: Date.parse(cached) || Date.now() });
  return body;
}

// The route as the page keeps it (also in IndexedDB); the server's order is the route's order.
function normalise(raw, caregiverId, day) {
  const visits = (raw.visits || []).map((v) => ({
    visit_id: v.visit_id, state: v.state, service_type: v.service_type,
    planned_start: v.planned_start, planned_end: v.planned_end,
    elder_name: v.elder_name ?? v.elder_id, address: v.address ?? "",
    lat: Number(v.lat), lon: Number(v.lon), tasks: Array.isArray(v.tasks) ? v.tasks.map(String) : [],
    needs_confirmation: v.needs_confirmation ?? true, map_url: v.navigation_url ?? null,
  }));
  const st = raw.station ?? null;
  return { caregiver_id: caregiverId, date: day, timezone: raw.timezone || TZ,
    caregiver_name: raw.name ?? caregiverId, area: raw.service_area_id ?? null,
    station: st && Number.isFinite(Number(st.lat)) ? { lat: Number(st.lat), lon: Number(st.lon) } : null,
    visits };
}

async function fetchRoute(caregiverId, day) {
  const id = encodeURIComponent(caregiverId);
  const raw = await getJSON(`/dispatch/caregivers/${id}/route?date=${day}`);
  return { ...normalise(raw, caregiverId, day), savedAt: raw.savedAt ?? null };
}

async function loadRoute() {
  const day = today(state.route?.timezone || TZ);
  const key = `route:${state.caregiverId}:${day}`;
  try {
    state.route = await fetchRoute(state.caregiverId, day);
    // From the service worker's cache when there is no network: say when it was saved.
    state.savedAt = state.route.savedAt ? new Date(state.route.savedAt).toISOString() : null;
    if (!state.savedAt) {
      await setMeta(key, { route: state.route, saved_at: new Date().toISOString() });
    }
  } catch (error) {
    if (error.status === 404 || error.status === 422) { // unknown caregiver: nothing to keep
      state.route = null;
      notify(t("loadFailed", { reason: error.message }), "error");
      return false;
    }
    const saved = await getMeta(key); // no network: the last route this phone saw
    if (!saved) return notify(t("loadFailed", { reason: error.message }), "error");
    state.route = saved.route;
    state.savedAt = saved.saved_at;
  }
  return true;
}

// The route as the phone knows it: the server's states with the queued steps on top.
function localVisits() {
  const steps = state.queue.map((r) => JSON.parse(r.payload));
  return (state.route?.visits || []).map((v) => {
    const mine = steps.filter((s) => s.visit_id === v.visit_id);
    const visit = { ...v, pending: mine.length > 0 };
    const after = { depart: "en_route", check_in: "checked_in", check_out: "checked_out" };
    for (const s of mine) visit.state = after[s.kind];
    return visit;
  });
}

// Steps --------------------------------------------------------------------------------------
function locate() {
  return new Promise((resolve) => {
    if (!navigator.geolocation) return resolve(null);
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude,
        accuracy_m: Math.round(p.coords.accuracy) }),
      // A fresh fix: a cached one may still be the last home.
      () => resolve(null), { enableHighAccuracy: true, timeout: 8000, maximumAge: 0 });
  });
}

async function step(kind, visit, extra = {}) {
  const at = new Date().toISOString(); // the moment of the tap, not of the sync
  const placed = kind !== "depart"; // setting off needs no position; check-in/out do
  if (placed) notify(t("locating"));
  const fix = placed ? await locate() : null;
  try {
    await enqueue({ kind, visit_id: visit.visit_id, caregiver_id: state.caregiverId,
      idempotency_key: crypto.randomUUID(), at, lat: fix?.lat ?? null, lon: fix?.lon ?? null,
      accuracy_m: fix?.accuracy_m ?? null, ...extra });
  } catch (error) { // nothing was queued: say so and let the caregiver try again
    notify(t("notSaved", { reason: error.message }), "error");
    return render();
  }
  state.queue = await pending();
  if (placed) notify(fix ? t("accuracy", { m: fix.accuracy_m }) : t("noFix"), fix ? "" : "warn");
  render();
  await sync();
}

// Sync ---------------------------------------------------------------------------------------
async function sync() {
  // One sync at a time, across tabs too (a second would only send duplicates); a step queued
  // while one is under way is sent by one more round right after it.
  if (state.syncing) {
    state.resync = true;
    return state.syncing;
  }
  state.syncing = (async () => {
    do {
      state.resync = false;
      if (!(await exclusive("caregiver-sync", sendQueue))) break; // no network or refused
    } while (state.resync);
  })().finally(() => { state.syncing = null; });
  await state.syncing;
  state.queue = await pending();
  render();
}

// Send the whole queue once; true when the server answered every record.
const BATCH = 200; // the server's limit per request; the rest follows in the next round

async function sendQueue() {
  const queued = await pending();
  const records = queued.slice(0, BATCH);
  if (queued.length > BATCH) state.resync = true;
  if (!records.length || !state.caregiverId) return true;
  let response;
  try {
    // A 401 (the token expired on a long shift) logs in and sends the same batch again; the
    // queue is only emptied by the server's answer to each record.
    response = await auth.fetch("/dispatch/sync", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ device_id: await deviceId(), caregiver_id: state.caregiverId,
        records: records.map(({ prev, payload, hash }) => ({ prev, payload, hash })) }) });
  } catch {
    notify(t("queuedOffline"), "warn"); // no network: stays queued
    return false;
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) { // log-in put off ("later"): the records stay queued
    state.needLogin = true;
    notify(t("needLogin"), "warn");
    return false;
  }
  state.needLogin = false;
  if (response.status === 409 && body.broken_at !== undefined) {
    state.blocked = { n: body.broken_at + 1, reason: body.detail };
    notify("");
    await reportPending();
    return false;
  }
  if (!response.ok) {
    notify(t("rejected", { reason: body.detail || response.status }), "error");
    return false;
  }
  state.blocked = null;
  checkClock(response);
  const refused = body.results.filter((r) => r.status === "rejected");
  if (refused.length) { // kept on the phone with the reason, for the caregiver and the centre
    const kept = (await getMeta("rejected")) || [];
    kept.push(...refused.map((r) => ({ ...JSON.parse(records[r.index].payload),
      reason: r.reason, hash: records[r.index].hash })));
    await setMeta("rejected", kept.slice(-50));
    state.rejected = kept.slice(-50);
  }
  await remove(body.results.map((r) => records[r.index].seq));
  await reportPending();
  if (refused.length) notify(refused.map((r) => t("rejected", { reason: r.reason })).join("\n"), "error");
  else notify(t(body.results.every((r) => r.status === "duplicate") ? "duplicate" : "applied"), "ok");
  await loadRoute();
  return true;
}

// Tell dispatch which visits still wait on this phone, so that their alerts wait too (a hint
// only: sent when the server answered a sync; an empty list clears it).
async function reportPending() {
  const visitIds = [...new Set((await pending()).map((r) => JSON.parse(r.payload).visit_id))];
  if (!visitIds.length && !state.reportedPending) return;
  const id = encodeURIComponent(state.caregiverId);
  await auth.fetch(`/dispatch/caregivers/${id}/pending-sync`, { method: "POST",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ visit_ids: visitIds }) })
    .then((r) => { state.reportedPending = r.ok && visitIds.length > 0; }, () => undefined);
}

// Live changes of this caregiver's visits (one cancelled, moved away by the dispatcher or a
// replan, or given to them): reload the route. The caregiver's own stream carries only their
// visits and alerts (the area's stream is the dispatchers'). A burst of events (the replay on
// connect, a replan) costs one reload in flight plus at most one more.
let stream = null;
let reloading = null;
let again = false;

function refresh() {
  if (reloading) { again = true; return; }
  reloading = (async () => {
    do {
      again = false;
      const before = JSON.stringify(state.route);
      await loadRoute();
      // Most events are echoes of this phone's own steps: redraw only on a real change.
      if (JSON.stringify(state.route) !== before) render();
    } while (again);
  })().finally(() => { reloading = null; });
}

// Why the server closed the stream: a 401 logs in here (auth.fetch). "refused" when it refuses
// this caller the stream for good (403) or has none (404); "login" when the log-in was put
// off; "retry" otherwise (no network, or logged in again).
async function streamRefused(url) {
  const abort = new AbortController();
  try {
    const response = await auth.fetch(url, { signal: abort.signal,
      headers: { Accept: "text/event-stream" } });
    if (response.status === 403 || response.status === 404) return "refused";
    return response.status === 401 ? "login" : "retry";
  } catch {
    return "retry";
  } finally {
    abort.abort();
  }
}

// Without the stream (refused, or a browser without EventSource), changes of the route are
// picked up by reading it now and then.
const POLL_MS = 30000;
let polling = null;

function poll() {
  polling ??= setInterval(() => {
    if (state.caregiverId && navigator.onLine && !document.hidden) refresh();
  }, POLL_MS);
}

function follow() {
  const me = state.caregiverId;
  if (!me) return;
  if (!("EventSource" in window)) { poll(); return; }
  if (stream?.caregiver === me) return;
  stream?.source?.close();
  // Resume after the last event this phone saw, so a reload does not replay the whole day.
  const seen = `stream:caregiver:${me}`;
  const after = Number(localStorage.getItem(seen)) || 0;
  const url = `/dispatch/caregivers/${encodeURIComponent(me)}/stream` + (after ? `?after=${after}` : "");
  const source = new EventSource(auth.streamUrl(url));
  const remember = (event) => { if (event.lastEventId) localStorage.setItem(seen, event.lastEventId); };
  source.addEventListener("alert", remember);
  // Every visit on this stream is (or was until now) this caregiver's.
  source.addEventListener("visit", (event) => { remember(event); refresh(); });
  // Reconnect by hand: the browser's own retry would resend the first ?after= again. A stream
  // the server closed at once (CLOSED: it answered with an error) is asked why first.
  source.addEventListener("error", async () => {
    const closed = source.readyState === EventSource.CLOSED;
    source.close();
    if (stream?.source !== source) return;
    const why = closed ? await streamRefused(url) : "retry";
    if (why !== "retry") {
      // Not for this caller (read the route now and then), or until the next log-in.
      stream = { caregiver: me, source: null };
      if (why === "refused") poll();
      return;
    }
    if (stream?.source !== source) return;
    stream = null;
    setTimeout(() => { if (!stream) follow(); }, 3000);
  });
  stream = { caregiver: me, source };
}

// View ---------------------------------------------------------------------------------------
function notify(text, kind = "") {
  const box = $("#notice");
  box.textContent = text;
  box.className = `notice ${kind}`;
}

// The elder's signature when there is no code: strokes on a canvas, kept as a small SVG.
function signaturePad(strokes) {
  const W = 300, H = 110;
  const canvas = h("canvas", { class: "signature", width: W, height: H });
  const ctx = canvas.getContext("2d");
  ctx.lineWidth = 2;
  for (const stroke of strokes) { // redraw what was signed before a re-render
    ctx.beginPath();
    stroke.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
  }
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [Math.round(((e.clientX - r.left) * W) / r.width), Math.round(((e.clientY - r.top) * H) / r.height)];
  };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    strokes.push([point(e)]);
  });
  canvas.addEventListener("pointermove", (e) => {
    const stroke = strokes[strokes.length - 1];
    if (!stroke || !e.buttons) return;
    const [x0, y0] = stroke[stroke.length - 1];
    const [x, y] = point(e);
    stroke.push([x, y]);
    ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x, y); ctx.stroke();
  });
  const clear = h("button", { type: "button", class: "link clear-signature", onclick: () => {
    strokes.length = 0; ctx.clearRect(0, 0, W, H); } }, t("clear"));
  const box = h("div", { class: "signature-box" }, h("span", {}, t("signature")), canvas, clear);
  const value = () => {
    const lines = strokes.filter((s) => s.length > 1);
    if (!lines.length) return null;
    const d = lines.map((s) => `M${s.map((p) => p.join(" ")).join("L")}`).join("");
    return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}"><path d="${d}" fill="none" stroke="#000" stroke-width="2"/></svg>`;
  };
  return { box, value };
}

// How the elder confirms the visit: the code on the card, a family proxy, or a signature.
function confirmation(draft, pad, key) {
  return [
    h("label", {}, t("code"), h("input", { class: "code", name: "code", inputmode: "numeric",
      autocomplete: "off", placeholder: t("codeHint"), maxlength: 12, value: draft.code,
      "data-focus": key("code"), oninput: (e) => { draft.code = e.target.value; } })),
    h("label", { class: "proxy" }, h("input", { type: "checkbox", class: "family-proxy",
      name: "proxy", checked: draft.proxy,
      onchange: (e) => { draft.proxy = e.target.checked; } }), t("familyProxy")),
    pad.box,
  ];
}

function visitCard(v, index, tz, next) {
  const active = v.state === "scheduled" || v.state === "en_route";
  const here = v.state === "checked_in";
  const card = h("li", { class: `visit state-${v.state}${v.pending ? " is-pending" : ""}`,
      "data-visit-id": v.visit_id, "data-state": v.state },
    h("div", { class: "visit-head" },
      h("span", { class: "seq" }, String(index + 1)),
      h("span", { class: "time" }, `${clock(v.planned_start, tz)}–${clock(v.planned_end, tz)}`),
      h("span", { class: "badge state" }, label("states", v.state)),
      v.pending ? h("span", { class: "badge pending-badge" }, t("pendingBadge")) : null),
    h("div", { class: "elder" }, v.elder_name),
    h("div", { class: "service" }, label("services", v.service_type)),
    h("div", { class: "address" }, v.address || `${v.lat.toFixed(4)}, ${v.lon.toFixed(4)}`),
    Number.isFinite(v.lat) ? h("div", { class: "links" },
      h("a", { class: "nav geo", href:
        `geo:${v.lat},${v.lon}?q=${v.lat},${v.lon}(${encodeURIComponent(v.elder_name)})` },
        t("navigate")),
      v.map_url ? h("a", { class: "nav map-link", href: v.map_url, target: "_blank",
        rel: "noopener" }, t("mapApp")) : null) : null);
  if (v.visit_id === next) {
    card.append(h("button", { class: "secondary depart", type: "button",
      onclick: (e) => { e.target.disabled = true; step("depart", v); } }, t("depart")));
  }
  if (active) {
    card.append(h("button", { class: "primary check-in", type: "button",
      onclick: (e) => { e.target.disabled = true; step("check_in", v); } }, t("checkIn")));
  }
  if (here) {
    const draft = state.drafts[v.visit_id] ??= { code: "", notes: "", proxy: false,
      skipped: [], strokes: [] };
    const pad = signaturePad(draft.strokes);
    const key = (name) => `${v.visit_id}:${name}`;
    const form = h("form", { class: "checkout" },
      v.tasks.length ? h("fieldset", {}, h("legend", {}, t("tasks")),
        v.tasks.map((task) => h("label", { class: "task" },
          h("input", { type: "checkbox", name: "task", value: task,
            checked: !draft.skipped.includes(task), onchange: (e) => {
              draft.skipped = draft.skipped.filter((x) => x !== task);
              if (!e.target.checked) draft.skipped.push(task);
            } }),
          task))) : null,
      ...(v.needs_confirmation ? confirmation(draft, pad, key) : []),
      h("label", {}, t("notes"), h("textarea", { class: "notes", name: "notes", rows: 2,
        "data-focus": key("notes"), oninput: (e) => { draft.notes = e.target.value; } },
        draft.notes)),
      h("button", { class: "primary check-out", type: "submit" }, t("checkOut")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      form.querySelector(".check-out").disabled = true;
      const data = new FormData(form);
      delete state.drafts[v.visit_id];
      step("check_out", v, { tasks_done: data.getAll("task"),
        confirmation_code: String(data.get("code") || "").trim() || null,
        family_proxy_confirmed: data.get("proxy") === "on", signature: pad.value(),
        notes: String(data.get("notes") || "").trim() || null });
    });
    card.append(form);
  }
  return card;
}

function render() {
  document.title = t("title");
  $("#title").textContent = t("title");
  $("#lang").textContent = t("lang");
  $("#net").textContent = navigator.onLine ? t("online") : t("offline");
  $("#net").className = `net ${navigator.onLine ? "on" : "off"}`;
  const n = state.queue.length;
  const indicator = $("#pending");
  indicator.dataset.count = String(n);
  indicator.textContent = n ? t("pending", { n }) : t("synced");
  indicator.className = `pending ${n ? "has-pending" : ""}`;
  $("#blocked").hidden = !state.blocked;
  $("#skew").hidden = !state.skew;
  if (state.skew) $("#skew").textContent = t("clockSkew", { n: state.skew });
  renderRejected();
  if (state.blocked) {
    $("#blocked").textContent = t("chainBroken", state.blocked);
    $("#blocked").title = state.blocked.reason;
  }
  $("#signin").hidden = Boolean(state.caregiverId);
  $("#main").hidden = !state.caregiverId;
  $("#signin-label").textContent = t("caregiverId");
  $("#signin-id").placeholder = t("signInHint");
  $("#signin-go").textContent = t("signIn");
  $("#signout").textContent = t("signOut");
  $("#sync-now").textContent = t("syncNow");
  if (!state.caregiverId) return;
  follow();
  const route = state.route;
  const tz = route?.timezone || TZ;
  $("#who").textContent = route ? `${route.caregiver_name} · ${route.date}` : state.caregiverId;
  $("#route-title").textContent = t("route");
  $("#saved").hidden = !state.savedAt;
  if (state.savedAt) $("#saved").textContent = t("savedRoute", { time: clock(state.savedAt, tz) });
  const visits = localVisits();
  drawMap($("#map"), route?.station, visits, t("station"));
  const list = $("#visits");
  const focused = document.activeElement?.dataset?.focus; // keep the caret where it was
  const caret = focused ? document.activeElement.selectionStart : null;
  // "On my way" for the next visit only, while no other visit is under way.
  const busy = visits.some((v) => v.state === "en_route" || v.state === "checked_in");
  const next = busy ? null : visits.find((v) => v.state === "scheduled")?.visit_id;
  list.replaceChildren(...visits.map((v, i) => visitCard(v, i, tz, next)));
  const restored = focused && list.querySelector(`[data-focus="${CSS.escape(focused)}"]`);
  if (restored) { restored.focus(); if (caret != null) restored.setSelectionRange(caret, caret); }
  if (route && !visits.length) list.append(h("li", { class: "empty" }, t("noVisits")));
}

function renderRejected() {
  const box = $("#rejected");
  const mine = (state.rejected || []).filter((r) => r.caregiver_id === state.caregiverId);
  box.hidden = !mine.length;
  if (!mine.length) return;
  const names = Object.fromEntries((state.route?.visits || []).map((v) => [v.visit_id, v.elder_name]));
  const kinds = { depart: t("depart"), check_in: t("checkIn"), check_out: t("checkOut") };
  box.replaceChildren(
    h("summary", {}, t("rejectedTitle", { n: mine.length })),
    h("ul", {}, mine.slice().reverse().map((r) => h("li", { class: "rejected-record" },
      `${kinds[r.kind] || r.kind} · ${names[r.visit_id] || r.visit_id} · `
      + `${clock(r.at, state.route?.timezone || TZ)} — ${r.reason}`))),
    h("button", { type: "button", class: "link", onclick: async () => {
      const rest = (state.rejected || []).filter((r) => r.caregiver_id !== state.caregiverId);
      await setMeta("rejected", rest);
      state.rejected = rest;
      render();
    } }, t("dismiss")));
}

// Who: the log-in's caregiver id (the token's claim) when it has one; otherwise the id typed
// in the sign-in form (an administrator or dispatcher acting on a caregiver's behalf).
function fromToken() {
  const id = auth.claims()?.caregiver_id;
  return typeof id === "string" && id ? id : null;
}

function forget() {
  state.caregiverId = null;
  state.route = null;
  stream?.source?.close();
  stream = null;
  localStorage.removeItem("caregiver_id");
  $("#visits").replaceChildren(); // the next person on this phone sees nothing of it
  $("#map").replaceChildren();
}

async function adopt() {
  const id = fromToken();
  if (!id || id === state.caregiverId) return;
  forget();
  state.caregiverId = id;
  localStorage.setItem("caregiver_id", id);
  await loadRoute();
  render();
  sync();
}

// Start --------------------------------------------------------------------------------------
async function start() {
  setLang(lang());
  if (!window.isSecureContext || !crypto.subtle) { // WebCrypto and service workers need it
    $("#insecure").hidden = false;
    $("#insecure").textContent = t("insecure");
  }
  $("#lang").addEventListener("click", () => { setLang(lang() === "zh" ? "en" : "zh"); render(); });
  $("#signin").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("#signin-id").value.trim();
    if (!id) return;
    state.caregiverId = id;
    if (await loadRoute()) localStorage.setItem("caregiver_id", id);
    else state.caregiverId = null;
    render();
    sync();
  });
  $("#signout").addEventListener("click", async () => {
    if (state.queue.length) return notify(t("unsyncedSignOut"), "warn");
    forget();
    auth.logout();
    render();
    if (await auth.login()) await adopt(); // the next caregiver on this phone
  });
  // Logged in again (an expired token, or after signing out): the token may name the caregiver.
  addEventListener("homecare:login", () => {
    if (!stream?.source) { stream = null; follow(); } // the stream, with the new token
    if (!state.queue.length) adopt();
  });
  $("#sync-now").addEventListener("click", async () => {
    if (state.needLogin && !(await auth.login())) return; // asked by hand: show the form
    await sync();
    if (state.caregiverId) refresh(); // and today's route as the centre has it now
  });
  addEventListener("online", () => { render(); sync(); });
  addEventListener("offline", () => render());
  setInterval(() => { if (state.queue.length && navigator.onLine) sync(); }, 20000);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("./sw.js", { scope: "./" }).catch(() => undefined);
    // The first visit's route came before the worker took over: fetch it again through it.
    navigator.serviceWorker.addEventListener("controllerchange", () => {
      if (state.caregiverId) refresh();
    });
  }
  state.queue = await pending();
  state.rejected = (await getMeta("rejected")) || [];
  const mine = fromToken();
  // Records queued by another caregiver on this phone are sent under their id first.
  if (mine && (!state.caregiverId || !state.queue.length)) state.caregiverId = mine;
  if (state.caregiverId) {
    localStorage.setItem("caregiver_id", state.caregiverId);
    await loadRoute();
  }
  render();
  document.body.dataset.ready = "1";
  sync();
  // Nobody known and no token yet: log in first (the id form stays as the fallback).
  if (!state.caregiverId && !auth.token?.() && navigator.onLine && await auth.login()) await adopt();
}

start();
