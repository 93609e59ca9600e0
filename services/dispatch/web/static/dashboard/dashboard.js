// The dispatcher dashboard: one read of the area's day, redrawn on every server-sent event.
import { drawGantt } from "/dispatch/dashboard/gantt.js";
import { language, setLanguage, t, translatePage, word } from "/dispatch/dashboard/i18n.js";
import { drawMap } from "/dispatch/dashboard/map.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { view: null, stream: null, streamKey: null, chosenElder: null, reloadTimer: null,
  proposal: null, selected: null, focus: null };
window.dashboard = state; // for the browser tests and the curious: what is drawn
// Log-in (/auth/login.js): every call carries the token; a 401 asks for user name and password
// and sends the call again. Without it (a server that checks nobody) the page works as before.
const auth = window.homecareAuth ?? { fetch: (url, options) => fetch(url, options),
  streamUrl: (url) => url, claims: () => null, recheck: async () => {} };

async function call(method, url, body) {
  const response = await auth.fetch(url, { method, headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const detail = data?.reasons?.join("; ") || (typeof data?.detail === "string" ? data.detail
      : JSON.stringify(data?.detail ?? response.statusText));
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return data;
}

function toast(text, kind = "info") {
  const box = $("toast");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

// Times: everything is shown in the area's local time, from the day's UTC offset.
function dayOrigin() { return Date.parse(`${state.view.date}T00:00:00${state.view.utc_offset}`); }
function minuteOf(iso) { return (Date.parse(iso) - dayOrigin()) / 60000; }
function clock(iso) {
  const m = Math.floor(minuteOf(iso));
  const day = Math.floor(m / 1440), mm = ((m % 1440) + 1440) % 1440;
  const text = `${String(Math.floor(mm / 60)).padStart(2, "0")}:${String(mm % 60).padStart(2, "0")}`;
  return day ? `${text}${day > 0 ? "+" : ""}${day}d` : text;
}
function atMinute(minute) {
  const hh = String(Math.floor(minute / 60)).padStart(2, "0");
  const mm = String(minute % 60).padStart(2, "0");
  return `${state.view.date}T${hh}:${mm}:00${state.view.utc_offset}`;
}
function nameOf(caregiverId) {
  return state.view.caregivers.find((c) => c.caregiver_id === caregiverId)?.name ?? caregiverId;
}

async function load() {
  const area = $("area").value.trim();
  if (!area) return;
  const day = $("day").value;
  // Only the latest read is drawn: an older answer arriving late would show a stale day.
  const seq = (state.loadSeq = (state.loadSeq || 0) + 1);
  const view = await call("GET", `/dispatch/dashboard/api/areas/${encodeURIComponent(area)}/day` +
    (day ? `?date=${day}` : ""));
  if (seq !== state.loadSeq) return;
  state.view = view;
  if (!day) $("day").value = view.date;
  render();
  follow(view);
  kpisFromOtherServices(view);
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

function scheduleReload() {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(() => load().catch((e) => toast(t("failed", { reason: e.message }), "error")), 150);
}

function follow(view) {
  const key = view.service_area_id;
  if (state.streamKey === key && state.stream) return;
  if (state.stream) state.stream.close();
  state.streamKey = key;
  // EventSource sends no headers: the token goes in the query string.
  const source = new EventSource(auth.streamUrl(
    `/dispatch/areas/${encodeURIComponent(key)}/stream?after=${view.stream_position}`));
  state.stream = source;
  const live = $("live");
  source.onopen = () => { live.className = "live on"; live.textContent = t("live"); };
  source.onerror = async () => {
    live.className = "live off"; live.textContent = t("offline");
    if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
    // Refused (an expired token, typically): log in if need be, then read the day and follow
    // again with the new token.
    source.close();
    if (state.stream !== source) return;
    state.stream = null;
    await auth.recheck();
    setTimeout(() => { if (!state.stream) scheduleReload(); }, 3000);
  };
  for (const kind of ["visit", "alert", "proposal"]) {
    source.addEventListener(kind, (e) => {
      const data = JSON.parse(e.data);
      if (kind === "proposal" && data.state === "proposed") state.proposal = data;
      scheduleReload();
    });
  }
}

function render() {
  const view = state.view;
  drawMap($("map"), view, { t, timeOf: clock });
  legend(view);
  drawGantt($("gantt"), view, { t, word, minuteOf, clock, onMove: move,
    onSelect: (id) => { state.selected = id; renderVisit(); } });
  renderVisit();
  renderUnassigned(view);
  renderAlerts(view);
  renderProposal();
  renderKpis(view);
  renderServices(view);
}

function legend(view) {
  // Clicking a caregiver in the legend shows their route alone on a busy map; again: all.
  const box = $("legend");
  box.replaceChildren();
  for (const c of view.caregivers) {
    const item = document.createElement("button");
    item.type = "button";
    item.className = `legend-item${state.focus === c.caregiver_id ? " focus" : ""}`;
    item.dataset.caregiverId = c.caregiver_id;
    item.innerHTML = `<span class="swatch" style="background:${c.colour}"></span>`;
    item.append(c.name);
    item.addEventListener("click", () => {
      state.focus = state.focus === c.caregiver_id ? null : c.caregiver_id;
      legend(view);
    });
    box.append(item);
  }
  for (const node of $("map").querySelectorAll("[data-caregiver-id]")) {
    node.classList.toggle("dim", !!state.focus && node.dataset.caregiverId !== state.focus);
  }
}

function renderUnassigned(view) {
  const list = $("unassigned");
  list.replaceChildren();
  for (const u of view.unassigned) {
    const li = document.createElement("li");
    li.className = `unassigned-item${u.emergency ? " emergency" : ""}`;
    li.dataset.orderId = u.order_id;
    const head = document.createElement("b");
    head.textContent = `${u.elder_name} · ${word("services", u.service_type)} · ${u.duration_minutes}′`;
    const why = document.createElement("span");
    why.className = "reason";
    why.textContent = `${word("states", u.state)}: ${u.reason}`;
    li.append(head, " ", why);
    list.append(li);
  }
  if (!view.unassigned.length) list.innerHTML = `<li class="empty">${t("noUnassigned")}</li>`;
}

function renderAlerts(view) {
  const open = view.alerts.filter((a) => a.open).reverse();
  const done = view.alerts.filter((a) => !a.open).reverse().slice(0, 30);
  $("alert-count").textContent = open.length;
  const list = $("alerts");
  list.replaceChildren();
  for (const a of open) {
    const li = document.createElement("li");
    li.className = `alert ${a.severity}`;
    li.dataset.alertId = a.alert_id;
    li.dataset.kind = a.kind;
    const head = document.createElement("div");
    head.innerHTML = `<b></b> <time></time>`;
    head.querySelector("b").textContent = word("kinds", a.kind);
    head.querySelector("time").textContent = clock(a.raised_at);
    const msg = document.createElement("div");
    msg.className = "message";
    msg.textContent = a.message;
    msg.title = a.message;
    const ack = document.createElement("button");
    ack.className = "ack";
    ack.textContent = t("acknowledge");
    ack.addEventListener("click", async () => {
      ack.disabled = true;
      try {
        await call("POST", `/dispatch/alerts/${encodeURIComponent(a.alert_id)}/acknowledge`, {});
        await load();
      } catch (e) { ack.disabled = false; toast(t("failed", { reason: e.message }), "error"); }
    });
    li.append(head, msg, ack);
    list.append(li);
  }
  if (!open.length) list.innerHTML = `<li class="empty">${t("noAlerts")}</li>`;
  const handled = $("alerts-done");
  handled.replaceChildren();
  for (const a of done) {
    const li = document.createElement("li");
    li.className = "alert done";
    li.dataset.alertId = a.alert_id;
    li.textContent = `${word("kinds", a.kind)} · ${a.message} · ` + (a.acknowledged_by
      ? t("ackBy", { by: a.acknowledged_by }) : t("resolved", { reason: a.resolved }));
    handled.append(li);
  }
}

function renderServices(view) {
  const select = $("service");
  const chosen = select.value;
  select.replaceChildren();
  for (const s of view.services) {
    const option = document.createElement("option");
    option.value = s;
    option.textContent = word("services", s);
    select.append(option);
  }
  if (chosen) select.value = chosen;
}

// The visit's details, and moving it without dragging (keyboard, exact time).
function renderVisit() {
  const panel = $("visit-panel");
  const v = state.view.visits.find((x) => x.visit_id === state.selected);
  panel.hidden = !v;
  if (!v) return;
  panel.dataset.visitId = v.visit_id;
  const rows = [
    ["elder", `${v.elder_name} (${v.elder_id})`], ["address", v.address || "—"],
    ["service", `${word("services", v.service_type)} · ${v.planned_minutes}′`],
    ["caregiver", v.caregiver_ids.map(nameOf).join(" + ")], ["state", word("states", v.state)],
    ["plannedTime", `${clock(v.planned_start)}–${clock(v.planned_end)}`],
    ["actualTime", v.checked_in_at ? `${clock(v.checked_in_at)}–${v.checked_out_at ? clock(v.checked_out_at) : "…"}` : "—"],
    ["funding", `${v.funding}${v.funding_detail ? ` (${v.funding_detail})` : ""}`],
    ["problems", [v.check_in_problem, v.check_out_problem, ...(v.verification_problems || [])]
      .filter(Boolean).join("; ") || "—"],
  ];
  const dl = $("visit-detail");
  dl.replaceChildren();
  for (const [key, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = t(key);
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.dataset.field = key;
    dl.append(dt, dd);
  }
  const form = $("visit-move");
  form.hidden = !["scheduled", "en_route"].includes(v.state);
  // A redraw (any live event) keeps what the dispatcher is typing unless the visit changed.
  const key = `${v.visit_id}|${v.caregiver_id}|${v.planned_start}|${state.view.caregivers.length}`;
  if (form.dataset.key === key) return;
  form.dataset.key = key;
  const select = $("move-caregiver");
  select.replaceChildren();
  for (const c of state.view.caregivers) {
    const option = document.createElement("option");
    option.value = c.caregiver_id;
    option.textContent = c.name;
    select.append(option);
  }
  select.value = v.caregiver_id;
  $("move-time").value = clock(v.planned_start).slice(0, 5);
}

// KPIs ---------------------------------------------------------------------------------------
function pct(x) { return x === null || x === undefined ? "—" : `${Math.round(x * 100)}%`; }

function renderKpis(view) {
  const rows = [["today", view.kpis.day], ["month", view.kpis.month]];
  const body = $("kpi-body");
  body.innerHTML = `<table class="kpi"><thead><tr><th></th><th>${t("onTime")}</th>
    <th>${t("donePlanned")}</th><th>${t("travelPerVisit")}</th></tr></thead><tbody></tbody></table>
    <dl class="kpi-more">
      <dt>${t("hoursBySource")}</dt><dd id="kpi-sources">${t("today")}: <span id="kpi-sources-day">…</span>
        · ${t("month")}: <span id="kpi-sources-month">…</span></dd>
      <dt>${t("entitlementUsed")}</dt><dd id="kpi-entitlement">…</dd>
      <dt>${t("creditsEarned")}</dt><dd id="kpi-credits">…</dd>
    </dl>`;
  const tbody = body.querySelector("tbody");
  for (const [name, k] of rows) {
    const tr = document.createElement("tr");
    tr.dataset.period = name;
    tr.innerHTML = `<th>${t(name)}</th><td class="on-time">${pct(k.on_time_rate)}</td>
      <td class="done">${k.done} / ${k.planned}</td>
      <td class="travel">${k.travel_minutes_per_visit ?? "—"}</td>`;
    tbody.append(tr);
  }
}

async function served(path) {
  // A probe that only answers when that service runs in this process (same origin).
  // 403: the service is here but this caller may not read that (its KPIs say unavailable).
  try { return (await auth.fetch(path)).status !== 404; } catch { return false; }
}

async function kpisFromOtherServices(view) {
  const done = view.visits.filter((v) => v.state === "checked_out" || v.state === "verified");
  const month = view.date.slice(0, 7);
  const area = encodeURIComponent(view.service_area_id);
  const set = (id, text) => { const node = $(id); if (node) node.textContent = text; };
  if (await served("/ledger/rules")) {
    const minutes = {};
    await Promise.all(done.filter((v) => v.caregiver_kind !== "volunteer").map(async (v) => {
      try {
        const charge = await call("GET", `/ledger/visits/${encodeURIComponent(v.visit_id)}/charge`);
        if (charge.reversed) return;
        for (const leg of charge.legs) minutes[leg.source] = (minutes[leg.source] || 0) + leg.minutes;
      } catch { /* not charged yet */ }
    }));
    const hours = (bySource) => {
      const parts = Object.entries(bySource).filter(([, m]) => m)
        .map(([source, m]) => `${word("sources", source)} ${(m / 60).toFixed(1)} h`);
      return parts.length ? parts.join(" · ") : t("nothingYet");
    };
    set("kpi-sources-day", hours(minutes));
    try {
      // The month from the ledger's statements: each line's funding reads "source minutes + …";
      // reversals count negative. Lines of services in other months are left out.
      const statements = await call("GET", `/ledger/areas/${area}/months/${month}/statements`);
      const monthly = {};
      for (const line of statements.statements.flatMap((st) => st.lines)) {
        if (line.service_month !== month) continue;
        const sign = line.kind === "reversal" ? -1 : 1;
        for (const part of line.funding.split(" + ")) {
          const m = part.trim().match(/^(\S+)\s+(\d+)$/);
          if (m) monthly[m[1]] = (monthly[m[1]] || 0) + sign * Number(m[2]);
        }
      }
      set("kpi-sources-month", hours(monthly));
    } catch (e) { set("kpi-sources-month", t("failed", { reason: e.message })); }
    try {
      const summary = await call("GET", `/ledger/areas/${area}/months/${month}/summary`);
      const cats = Object.entries(summary.by_category).map(([c, r]) =>
        `${c} ${(r.used_minutes / 60).toFixed(1)}/${(r.entitled_minutes / 60).toFixed(0)} h (${r.utilisation_percent}%)`);
      set("kpi-entitlement", cats.length ? cats.join(" · ") : t("nothingYet"));
    } catch (e) { set("kpi-entitlement", t("failed", { reason: e.message })); }
  } else {
    set("kpi-sources", t("notAvailable"));
    set("kpi-entitlement", t("notAvailable"));
  }
  if (await served("/timebank/totals")) {
    let credited = 0;
    await Promise.all(done.filter((v) => v.caregiver_kind === "volunteer").map(async (v) => {
      try {
        const earning = await call("GET", `/timebank/visits/${encodeURIComponent(v.visit_id)}/earning`);
        credited += earning.credited_minutes;
      } catch { /* not settled yet */ }
    }));
    set("kpi-credits", t("minutes", { n: credited }));
  } else {
    set("kpi-credits", t("tbNotAvailable"));
  }
}

// Commands -----------------------------------------------------------------------------------
async function move(visitId, caregiverId, minute, replacing = null) {
  try {
    const visit = await call("POST", `/dispatch/dashboard/api/visits/${encodeURIComponent(visitId)}/move`,
      { caregiver_id: caregiverId, planned_start: atMinute(minute), replacing });
    toast(t("moved", { visit: visitId, who: nameOf(visit.caregiver_id), time: clock(visit.planned_start) }), "ok");
  } catch (e) {
    toast(t("refused", { reason: e.message }), "error");
  }
  await load();
}

async function withProgress(key, work) {
  const box = $("progress"), text = $("progress-text");
  const began = performance.now();
  box.hidden = false;
  text.textContent = t(key, { s: 0 });
  const timer = setInterval(() => {
    text.textContent = t(key, { s: ((performance.now() - began) / 1000).toFixed(0) });
  }, 250);
  $("plan-day").disabled = $("replan").disabled = true;
  try { return await work(); } finally {
    clearInterval(timer);
    box.hidden = true;
    $("plan-day").disabled = $("replan").disabled = false;
  }
}

async function planDay() {
  const area = encodeURIComponent(state.view.service_area_id);
  try {
    const result = await withProgress("planning", () =>
      call("POST", `/dispatch/areas/${area}/plans?date=${state.view.date}`));
    toast(t("planDone", { scheduled: result.scheduled.length, rescheduled: result.rescheduled.length,
      unassigned: Object.keys(result.unassigned).length, secs: result.solve_seconds }), "ok");
  } catch (e) { toast(t("failed", { reason: e.message }), "error"); }
  await load();
}

async function replan() {
  const area = encodeURIComponent(state.view.service_area_id);
  try {
    const proposal = await withProgress("replanning", () =>
      call("POST", `/dispatch/areas/${area}/replans`, { date: state.view.date,
        reason: "调度员从现在重排 replan from now" }));
    if (proposal.state === "proposed") state.proposal = proposal;
    else toast(t("accepted"), "ok");
  } catch (e) { toast(t("failed", { reason: e.message }), "error"); }
  await load();
}

function renderProposal() {
  const pending = state.view.proposals;
  if (!state.proposal || state.proposal.state !== "proposed"
      || !pending.some((p) => p.proposal_id === state.proposal.proposal_id)) {
    state.proposal = pending.length ? pending[pending.length - 1] : null;
  } else {
    state.proposal = pending.find((p) => p.proposal_id === state.proposal.proposal_id);
  }
  const panel = $("proposal-panel"), box = $("proposal");
  const p = state.proposal;
  panel.hidden = !p;
  if (!p) return;
  const visits = Object.fromEntries(state.view.visits.map((v) => [v.visit_id, v]));
  box.replaceChildren();
  box.dataset.proposalId = p.proposal_id;
  const head = document.createElement("p");
  head.textContent = t("proposalHead", { reason: p.reason, moves: p.moves.length, left: p.unassigned.length });
  const table = document.createElement("table");
  table.className = "diff";
  for (const m of p.moves) {
    const v = visits[m.visit_id];
    const tr = document.createElement("tr");
    tr.className = "move";
    tr.dataset.visitId = m.visit_id;
    const cells = [v ? `${v.elder_name} · ${word("services", v.service_type)}` : m.visit_id,
      `${t("moveFrom")}: ${nameOf(m.previous_caregiver_id)} ${v ? clock(v.planned_start) : ""}`,
      "→", `${t("moveTo")}: ${nameOf(m.caregiver_id)} ${clock(m.planned_start)}`];
    for (const [i, text] of cells.entries()) {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 1) td.className = "was";
      if (i === 3) td.className = "new";
      tr.append(td);
    }
    table.append(tr);
  }
  for (const u of p.unassigned) {
    const tr = document.createElement("tr");
    tr.className = "left";
    const v = visits[u.visit_id];
    tr.innerHTML = "<td></td><td colspan=3></td>";
    tr.children[0].textContent = v ? `${v.elder_name} · ${word("services", v.service_type)}` : u.visit_id;
    tr.children[1].textContent = `${t("cannotPlace")}: ${u.reason}`;
    table.append(tr);
  }
  const accept = document.createElement("button");
  accept.id = "proposal-accept";
  accept.textContent = t("accept");
  accept.addEventListener("click", () => decide(p, true));
  const reject = document.createElement("button");
  reject.id = "proposal-reject";
  reject.textContent = t("reject");
  reject.addEventListener("click", () => decide(p, false));
  if (!p.moves.length && !p.unassigned.length) head.textContent = t("proposalNone");
  box.append(head, table, accept, " ", reject);
}

async function decide(p, accept) {
  try {
    await call("POST", `/dispatch/proposals/${encodeURIComponent(p.proposal_id)}/${accept ? "accept" : "reject"}`,
      accept ? {} : { reason: "dispatcher rejected" });
    toast(t(accept ? "accepted" : "rejected"), "ok");
    state.proposal = null;
  } catch (e) { toast(t("failed", { reason: e.message }), "error"); }
  await load();
}

// Hotline order entry ------------------------------------------------------------------------
function searchElders() {
  const q = $("elder-search").value.trim().toLowerCase();
  const list = $("elder-matches");
  list.replaceChildren();
  if (!q || !state.view) return;
  const matches = state.view.elders.filter((e) => e.name.toLowerCase().includes(q)
    || e.elder_id.toLowerCase().includes(q) || (e.address || "").toLowerCase().includes(q)).slice(0, 8);
  for (const e of matches) {
    const li = document.createElement("li");
    li.dataset.elderId = e.elder_id;
    li.textContent = `${e.name} (${e.elder_id}) ${e.address || ""}`;
    li.addEventListener("click", () => {
      state.chosenElder = e;
      $("elder-chosen").textContent = `✓ ${e.name} (${e.elder_id})`;
      $("elder-chosen").dataset.elderId = e.elder_id;
      list.replaceChildren();
    });
    list.append(li);
  }
}

async function placeOrder(event) {
  event.preventDefault();
  const result = $("order-result");
  if (!state.chosenElder) { result.textContent = t("chooseElder"); return; }
  const pref = $("time-pref").value;
  const windows = { morning: ["08:00", "12:00"], afternoon: ["13:00", "17:00"],
    custom: [$("window-from").value, $("window-to").value] };
  const body = { elder_id: state.chosenElder.elder_id, service_type: $("service").value,
    requested_date: state.view.date, source: "hotline",
    emergency: $("emergency").checked };
  if (windows[pref]) {
    const [from, to] = windows[pref];
    body.window_start = `${state.view.date}T${from}:00${state.view.utc_offset}`;
    body.window_end = `${state.view.date}T${to}:00${state.view.utc_offset}`;
  }
  if ($("order-notes").value.trim()) body.notes = $("order-notes").value.trim();
  $("place-order").disabled = true;
  try {
    const placed = await call("POST", "/dispatch/orders", body);
    const o = placed.order, v = placed.visit;
    result.dataset.orderId = o.order_id;
    result.className = v ? "ok" : "warn";
    result.textContent = v ? t("orderPlaced", { order: o.order_id, who: nameOf(v.caregiver_id), time: clock(v.planned_start) })
      : o.state === "placed" ? t("orderAwait", { order: o.order_id })
        : t("orderUnassigned", { order: o.order_id, reason: o.unassigned_reason });
    $("emergency").checked = false;
  } catch (e) {
    result.className = "error";
    result.textContent = t("orderFailed", { reason: e.message });
  } finally { $("place-order").disabled = false; }
  await load();
}

// Start --------------------------------------------------------------------------------------
function start() {
  setLanguage(params.get("lang") === "en" ? "en" : language());
  translatePage();
  // The area asked for, else the last one shown if it is still this dispatcher's, else theirs.
  const mine = auth.claims()?.service_areas || [];
  const last = localStorage.getItem("homecare-dashboard-area");
  $("area").value = params.get("area") || (last && (!mine.length || mine.includes(last)) ? last : null)
    || mine[0] || "yiwu-choucheng";
  if (params.get("date")) $("day").value = params.get("date");
  $("lang").addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh");
    translatePage();
    if (state.view) { render(); kpisFromOtherServices(state.view); }
  });
  const reload = () => {
    localStorage.setItem("homecare-dashboard-area", $("area").value.trim());
    load().catch((e) => toast(t("failed", { reason: e.message }), "error"));
  };
  $("area").addEventListener("change", reload);
  if (window.homecareAuth) auth.logoutButton($("logout"));
  // Logged in (again, or as someone else): follow the stream with the new token.
  addEventListener("homecare:login", () => {
    state.stream?.close();
    state.stream = null;
    reload();
  });
  $("day").addEventListener("change", reload);
  $("plan-day").addEventListener("click", planDay);
  $("replan").addEventListener("click", replan);
  $("elder-search").addEventListener("input", searchElders);
  $("time-pref").addEventListener("change", () => { $("custom-window").hidden = $("time-pref").value !== "custom"; });
  $("order").addEventListener("submit", placeOrder);
  $("visit-close").addEventListener("click", () => { state.selected = null; renderVisit(); });
  $("visit-move").addEventListener("submit", (e) => {
    e.preventDefault();
    const [h, m] = $("move-time").value.split(":").map(Number);
    move(state.selected, $("move-caregiver").value, h * 60 + m);
  });
  reload();
}

start();
