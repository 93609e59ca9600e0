// Volunteer page of the time bank. Plain JS, no libraries; every request is same-origin.
"use strict";

const $ = (sel) => document.querySelector(sel);
const SERVICE_NAMES = {
  welfare_check: "探访关爱", companionship: "精神慰藉", cleaning: "助洁", meal_help: "助餐",
  meal_delivery: "送餐", shopping: "助购", medical_escort: "陪同就医", bathing: "助浴",
  mobility: "助行", housework: "家务", medication_reminder: "用药提醒",
};
// The books keep reasons in English; the page shows them in Chinese (unknown ones as they are).
const REASONS = [
  [/^credits for verified volunteer service/, "志愿服务获得"],
  [/^earned above the balance cap/, "超出余额上限，捐入社区基金"],
  [/^gift: ?/, "赠送 "], [/^gift$/, "赠送"],
  [/^credits held for a visit/, "服务预约冻结"],
  [/^credits redeemed for a verified visit/, "兑换服务"],
  [/^lapsed: ?/, "失效 "],
];
function reasonZh(reason) {
  for (const [pattern, zh] of REASONS) if (pattern.test(reason)) return reason.replace(pattern, zh);
  return reason;
}
const STATES = { assigned: "待服务", done: "已完成", cancelled: "已取消" };
let person = null;  // the time-bank account (the token's volunteer_id)
let member = null;
// Log-in (/auth/login.js): every call carries the token; a 401 asks for user name and password
// and sends the call again. Without it (a server that checks nobody) the page works as before.
const auth = window.homecareAuth ?? { fetch: (url, options) => fetch(url, options),
  claims: () => null };
// In dispatch a volunteer is a caregiver of kind volunteer, under the token's caregiver_id.
function caregiverId() {
  return auth.claims()?.caregiver_id || person;
}

// Days are the service area's days (China: Asia/Shanghai), whatever the phone's setting.
const AREA_TIME_ZONE = "Asia/Shanghai";
function localDay(offsetDays) {  // YYYY-MM-DD
  return new Date(Date.now() + offsetDays * 86400000)
    .toLocaleDateString("sv-SE", { timeZone: AREA_TIME_ZONE });
}

function localTime(iso) {  // e.g. 11/24 08:00, in the area's time zone
  return new Date(iso).toLocaleString("zh-CN", {
    timeZone: AREA_TIME_ZONE, month: "numeric", day: "numeric", hour: "2-digit",
    minute: "2-digit", hour12: false });
}

function hours(minutes) {
  const sign = minutes < 0 ? "-" : "";
  const m = Math.abs(minutes);
  const h = Math.floor(m / 60);
  return sign + (h ? `${h} 小时 ` : "") + `${m % 60} 分钟`;
}

function say(text, error = false) {
  const box = $("#message");
  box.textContent = text;
  box.className = error ? "error" : "";
}

async function call(method, url, body) {
  const response = await auth.fetch(url, {
    method, headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    const error = new Error(detail || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function item(html) {
  const li = document.createElement("li");
  li.innerHTML = html;
  return li;
}

function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function loadBalance() {
  member = await call("GET", `/timebank/accounts/${encodeURIComponent(person)}`);
  $("#available").textContent = "可用 " + hours(member.available_minutes);
  $("#balance").textContent = hours(member.balance_minutes);
  $("#held").textContent = hours(member.held_minutes);
  $("#bank").textContent = member.bank_id;
}

async function loadHistory() {
  const rows = await call("GET", `/timebank/accounts/${encodeURIComponent(person)}/history`);
  const list = $("#history");
  list.replaceChildren();
  if (!rows.length) list.append(item('<span class="muted">还没有记录</span>'));
  for (const r of rows) {
    const cls = r.minutes >= 0 ? "plus" : "minus";
    const when = localTime(r.at);
    list.append(item(`<span class="${cls}">${r.minutes >= 0 ? "+" : ""}${hours(r.minutes)}</span>
      · ${escapeHtml(reasonZh(r.reason))} <span class="muted">${when}${r.state === "pending" ? " · 冻结中" : r.state === "voided" ? " · 已退回" : ""}</span>`));
  }
}

function here() {
  return new Promise((resolve) => {
    if (!navigator.geolocation) return resolve(null);
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude,
                       accuracy_m: p.coords.accuracy }),
      () => resolve(null), { timeout: 5000, maximumAge: 60000 });
  });
}

async function checkIn(task) {
  const position = await here();
  try {
    await call("POST", `/dispatch/visits/${encodeURIComponent(task.visit_id)}/check-in`,
               { caregiver_id: caregiverId(), ...(position || {}) });
    say("已签到");
  } catch (error) {
    say(error.status === 404 ? "签到需要调度服务（此处未连接）" : "签到失败：" + error.message, true);
  }
}

// What dispatch's catalogue lists for each service (the tasks a volunteer ticks when done).
const catalogues = {};
async function catalogueTasks(area, serviceType) {
  if (!(area in catalogues)) {
    catalogues[area] = call("GET", `/dispatch/areas/${encodeURIComponent(area)}/catalogue`)
      .catch(() => []);
  }
  const entry = (await catalogues[area]).find((e) => e.service_type === serviceType);
  return entry ? entry.tasks : [];
}

async function checkOut(task, code, proxy, tasksDone) {
  const position = await here();
  try {
    const visit = await call("POST",
      `/dispatch/visits/${encodeURIComponent(task.visit_id)}/check-out`,
      { caregiver_id: caregiverId(), confirmation_code: code || null, family_proxy_confirmed: proxy,
        tasks_done: tasksDone, ...(position || {}) });
    say(visit.state === "verified" ? "已签退，服务已确认，时间将记入账户" : "已签退，等待审核");
    setTimeout(refresh, 1500);
  } catch (error) {
    say(error.status === 404 ? "签退需要调度服务（此处未连接）" : "签退失败：" + error.message, true);
  }
}

async function loadTasks() {
  const tasks = await call("GET", `/timebank/volunteers/${encodeURIComponent(person)}/tasks`);
  const list = $("#tasks");
  list.replaceChildren();
  if (!tasks.length) list.append(item('<span class="muted">暂无分配给我的任务</span>'));
  for (const t of tasks) {
    const start = localTime(t.planned_start);
    const li = item(`<strong>${SERVICE_NAMES[t.service_type] || t.service_type}</strong>
      · 老人 ${escapeHtml(t.elder_id)} · ${start} · ${t.planned_minutes} 分钟
      · <span class="muted">${STATES[t.state] || t.state}</span>`);
    if (t.state === "assigned") {
      const form = document.createElement("form");
      form.className = "task-actions";
      form.innerHTML = `<fieldset class="done"><legend>完成的服务内容</legend></fieldset>
        <label>老人确认码<input name="code" inputmode="numeric" maxlength="8"></label>
        <label><input type="checkbox" name="proxy" style="width:auto"> 家属代为确认</label>
        <div class="row"><button type="button" class="secondary" data-act="in">签到</button>
        <button type="submit">签退</button></div>`;
      const done = form.querySelector(".done");
      for (const name of await catalogueTasks(t.service_area_id, t.service_type)) {
        const label = document.createElement("label");
        label.className = "tick";
        label.innerHTML = `<input type="checkbox" name="task" checked> ${escapeHtml(name)}`;
        label.querySelector("input").value = name;
        done.append(label);
      }
      done.hidden = !done.querySelector("input");
      form.querySelector('[data-act="in"]').addEventListener("click", () => checkIn(t));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const ticked = [...form.querySelectorAll("[name=task]:checked")].map((i) => i.value);
        checkOut(t, form.code.value.trim(), form.proxy.checked, ticked);
      });
      li.append(form);
    }
    list.append(li);
  }
}

async function claim(orderId, button) {
  // Dispatch decides: the same rules as any assignment (mutual aid only, limits, the window).
  button.disabled = true;
  try {
    const answer = await call("POST", `/dispatch/orders/${encodeURIComponent(orderId)}/claim`,
      { caregiver_id: caregiverId() });
    const start = new Date(answer.visit.planned_start);
    say(`已接单：${start.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit" })} 上门`);
    await loadOpenTasks();
  } catch (error) {
    button.disabled = false;
    say(`未能接单：${error.message}`, true);
  }
}

async function loadOpenTasks() {
  const list = $("#open-tasks");
  list.replaceChildren();
  const today = localDay(0);
  try {
    // Nearest first when the phone shares its position: dispatch tells how far each elder's
    // home is from here (distance_m, rounded), never the address or the home's position.
    const position = await here();
    const near = position ? `&near=${position.lat.toFixed(5)},${position.lon.toFixed(5)}` : "";
    const orders = await call("GET",
      `/dispatch/areas/${encodeURIComponent(member.bank_id)}/orders?date=${today}${near}`);
    const open = orders.filter((o) => o.state === "placed" || o.state === "unassigned");
    for (const o of open) o.distance = o.distance_m ?? null;
    open.sort((a, b) => (a.distance ?? Infinity) - (b.distance ?? Infinity));
    const sorted = open.some((o) => o.distance != null);
    $("#open-note").textContent = !open.length ? "今天附近没有开放任务"
      : "今天还没有人接的服务（由调度分配）" + (sorted ? "，近的在前" : "");
    for (const o of open) {
      const away = o.distance == null ? "" : ` · 约 ${o.distance < 1000
        ? Math.round(o.distance) + " 米" : (o.distance / 1000).toFixed(1) + " 公里"}`;
      const li = item(`<strong>${SERVICE_NAMES[o.service_type] || o.service_type}</strong>
        · 老人 ${escapeHtml(o.elder_id)} · ${o.duration_minutes} 分钟${away}`);
      const take = document.createElement("button");
      take.type = "button";
      take.className = "claim";
      take.dataset.order = o.order_id;
      take.textContent = "接单";
      take.addEventListener("click", () => claim(o.order_id, take));
      li.append(" ", take);
      list.append(li);
    }
  } catch (error) {
    $("#open-note").textContent = error.status === 403 ? "没有查看开放任务的权限"
      : "开放任务来自调度服务，此处未连接";
  }
}

async function refresh() {
  try {
    await loadBalance();
  } catch (error) {
    say(error.status === 404 ? "没有找到这个编号的账户"
      : error.status === 403 ? "这个账户不是您的（请用自己的账号登录）"
      : error.status === 401 ? "请先登录" : error.message, true);
    $("#main").hidden = true;
    return;
  }
  $("#main").hidden = false;
  await Promise.all([loadHistory(), loadTasks(), loadOpenTasks()]);
}

$("#who").addEventListener("submit", (e) => {
  e.preventDefault();
  person = $("#person").value.trim();
  localStorage.setItem("timebank.person", person);
  say("");
  refresh();
});

$("#gift").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const to = form.to_person.value.trim();
  try {
    await call("POST", "/timebank/gifts", {
      from_person: person, to_person: to || null, minutes: Number(form.minutes.value),
      note: form.note.value.trim() || null });
    say(`已赠送 ${hours(Number(form.minutes.value))} 给 ${to || "社区基金"}`);
    form.reset();
    refresh();
  } catch (error) {
    say("赠送失败：" + error.message, true);
  }
});

$("#redeem").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  try {
    const r = await call("POST", "/timebank/redemptions", {
      redeemer_id: person, elder_id: form.elder_id.value.trim(),
      service_type: form.service_type.value, minutes: Number(form.minutes.value),
      requested_date: form.requested_date.value, service_area_id: member.bank_id });
    say(`已下单（${r.order_id}），排班时冻结时间，服务确认后扣除`);
  } catch (error) {
    say("兑换失败：" + error.message, true);
  }
});

$("#redeem").requested_date.value = localDay(1);

// Whose page: the log-in's time-bank id when the token has one (the number form is then
// hidden); otherwise the number typed or remembered (staff helping a volunteer).
function start() {
  const mine = auth.claims()?.volunteer_id;
  $("#who").hidden = Boolean(mine);
  const remembered = mine || new URLSearchParams(location.search).get("person")
    || localStorage.getItem("timebank.person");
  if (remembered) {
    $("#person").value = remembered;
    person = remembered;
    refresh();
  } else if (window.homecareAuth && !auth.token()) {
    auth.login();  // nobody yet: log in (the number form stays as the fallback)
  }
}

if (window.homecareAuth) {
  auth.logoutButton($("#logout"));
  addEventListener("homecare:login", () => { say(""); start(); });
}
start();
