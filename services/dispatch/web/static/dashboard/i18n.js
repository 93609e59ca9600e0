// Words of the dashboard, zh-CN first; English on the toggle. t(key, vars) with {name} slots.
export const STRINGS = {
  zh: {
    title: "调度台", area: "服务区域", date: "日期", planDay: "生成当日排班", replan: "从现在重排",
    offline: "未连接", live: "实时", map: "区域地图", kpis: "指标", timeline: "当日时间线",
    planned: "计划", actual: "实际", travel: "路程", break: "休息/空闲", late: "迟到",
    overrun: "超时",
    dragHint: "拖动计划条到其他护理员或时间以改派；系统用路线校验器检查后执行或拒绝。",
    unassignedLane: "未分配", proposal: "重排方案", alerts: "告警", handled: "已处理",
    hotline: "热线下单", findElder: "查找老人", elderHint: "姓名或编号", service: "服务项目",
    timePref: "时间偏好", anyTime: "不限", morning: "上午 08:00–12:00",
    afternoon: "下午 13:00–17:00", custom: "指定时段", emergency: "紧急救助", notes: "备注",
    placeOrder: "下单", station: "服务站", home: "老人住址", lastSeen: "最近位置 {time}",
    noVisits: "暂无安排", unavailable: "不可用", acknowledge: "确认", ackBy: "已由 {by} 确认",
    resolved: "已解决：{reason}", noAlerts: "暂无告警", noUnassigned: "全部已分配",
    planning: "正在排班… {s} 秒", replanning: "正在重排… {s} 秒",
    planDone: "排班完成：新安排 {scheduled}，调整 {rescheduled}，未分配 {unassigned}（{secs} 秒）",
    proposalNone: "重排方案：无需调整", accept: "接受", reject: "拒绝",
    proposalHead: "原因：{reason}。{moves} 个调整，{left} 个无法安排",
    moveFrom: "原", moveTo: "新", cannotPlace: "无法安排", accepted: "方案已接受",
    rejected: "方案已拒绝",
    moved: "已改派：{visit} → {who} {time}", refused: "改派被拒绝：{reason}",
    orderPlaced: "已下单 {order}：{who} {time} 上门", orderUnassigned: "已下单 {order}，暂无人可派：{reason}",
    orderAwait: "已下单 {order}，等待排班", orderFailed: "下单失败：{reason}",
    chooseElder: "请先选择老人", failed: "操作失败：{reason}",
    onTime: "准时率", donePlanned: "完成 / 计划", travelPerVisit: "每单路程（分钟）",
    today: "今日", month: "本月", hoursBySource: "资金来源（小时，台账）",
    creditsEarned: "时间银行积分（分钟）", entitlementUsed: "补贴额度使用（本月）",
    notAvailable: "不可用（台账服务未运行）", tbNotAvailable: "不可用（时间银行未运行）",
    nothingYet: "暂无", minutes: "{n} 分钟", visitsCount: "{n} 单",
    sos: "急·", visitDetail: "服务详情", reassignTo: "改派给", move: "改派", elder: "老人", address: "地址",
    caregiver: "护理员", plannedTime: "计划时间", actualTime: "实际时间", state: "状态",
    funding: "资助", problems: "问题",
    lang: "EN",
    kinds: { late_start: "迟到", missed: "漏服务", overrun: "超时", location_not_verified: "位置未核验",
      needs_review: "需审核", not_funded: "未获资助", certificate_expiring: "证书到期",
      no_show: "老人不在家", welfare_escalation: "探访升级", emergency: "紧急救助",
      unassigned: "未分配", replan_proposed: "重排待确认" },
    states: { scheduled: "待服务", en_route: "在途", checked_in: "服务中", checked_out: "已签退",
      verified: "已核验", cancelled: "已取消", no_show: "未遇", missed: "漏服务", disputed: "有争议",
      placed: "待排班", unassigned: "未分配" },
    services: { meal_help: "助餐", meal_delivery: "送餐", cleaning: "助洁", bathing: "助浴",
      mobility: "助行", shopping: "助购", housework: "家务", bed_making: "整理床铺",
      dressing: "穿衣", rehabilitation_nursing: "康复护理", medication_reminder: "提醒服药",
      medical_escort: "陪同就医", companionship: "精神慰藉", equipment_rental_delivery: "辅具配送",
      welfare_check: "探访关爱", emergency: "紧急救助" },
    sources: { entitlement: "政府补贴", package: "服务包", out_of_pocket: "自费",
      time_credits: "时间银行" },
    off: { "not working that day": "当日休息", "certificate expired": "证书过期",
      "reported sick": "病假" },
  },
  en: {
    title: "Dispatch desk", area: "Area", date: "Date", planDay: "Plan the day",
    replan: "Replan from now", offline: "Not connected", live: "Live", map: "Area map",
    kpis: "KPIs", timeline: "Timeline of the day", planned: "planned", actual: "actual",
    travel: "travel", break: "break/idle", late: "late", overrun: "overrun",
    dragHint: "Drag a planned bar to another caregiver or time to reassign; the router's checker applies or refuses it.",
    unassignedLane: "Unassigned", proposal: "Replanning proposal", alerts: "Alerts",
    handled: "Handled", hotline: "Hotline order", findElder: "Find elder",
    elderHint: "name or number", service: "Service", timePref: "Time preference",
    anyTime: "any time", morning: "morning 08:00–12:00", afternoon: "afternoon 13:00–17:00",
    custom: "choose a window", emergency: "Emergency", notes: "Notes", placeOrder: "Place order",
    station: "Station", home: "Elder's home", lastSeen: "last seen {time}",
    noVisits: "No visits", unavailable: "unavailable", acknowledge: "Acknowledge",
    ackBy: "acknowledged by {by}", resolved: "resolved: {reason}", noAlerts: "No alerts",
    noUnassigned: "Everything is assigned", planning: "Planning… {s} s",
    replanning: "Replanning… {s} s",
    planDone: "Planned: {scheduled} new, {rescheduled} moved, {unassigned} unassigned ({secs} s)",
    proposalNone: "Replan: nothing needs to move", accept: "Accept", reject: "Reject",
    proposalHead: "Reason: {reason}. {moves} moves, {left} cannot be placed",
    moveFrom: "was", moveTo: "now", cannotPlace: "cannot be placed", accepted: "Proposal accepted",
    rejected: "Proposal rejected",
    moved: "Moved: {visit} → {who} {time}", refused: "Move refused: {reason}",
    orderPlaced: "Order {order}: {who} at {time}", orderUnassigned: "Order {order} taken, nobody free: {reason}",
    orderAwait: "Order {order} waits for the daily plan", orderFailed: "Order failed: {reason}",
    chooseElder: "Choose an elder first", failed: "Failed: {reason}",
    onTime: "On-time rate", donePlanned: "Done / planned", travelPerVisit: "Travel min per visit",
    today: "Today", month: "Month", hoursBySource: "Hours by funding source (ledger)",
    creditsEarned: "Time-bank credits earned (min)", entitlementUsed: "Entitlement used (month)",
    notAvailable: "unavailable (ledger not running here)",
    tbNotAvailable: "unavailable (time bank not running here)",
    nothingYet: "none yet", minutes: "{n} min", visitsCount: "{n} visits",
    sos: "SOS·", visitDetail: "Visit", reassignTo: "Move to", move: "Move", elder: "Elder", address: "Address",
    caregiver: "Caregiver", plannedTime: "Planned", actualTime: "Actual", state: "State",
    funding: "Funding", problems: "Problems",
    lang: "中文",
    kinds: { late_start: "late start", missed: "missed", overrun: "overrun",
      location_not_verified: "location not verified", needs_review: "needs review",
      not_funded: "not funded", certificate_expiring: "certificate expiring", no_show: "no show",
      welfare_escalation: "welfare escalation", emergency: "emergency", unassigned: "unassigned",
      replan_proposed: "replan proposed" },
    states: { scheduled: "scheduled", en_route: "en route", checked_in: "in progress",
      checked_out: "checked out", verified: "verified", cancelled: "cancelled",
      no_show: "no show", missed: "missed", disputed: "disputed", placed: "awaiting plan",
      unassigned: "unassigned" },
    services: { meal_help: "meal help", meal_delivery: "meal delivery", cleaning: "cleaning",
      bathing: "bathing", mobility: "mobility", shopping: "shopping", housework: "housework",
      bed_making: "bed making", dressing: "dressing", rehabilitation_nursing: "rehab nursing",
      medication_reminder: "medication reminder", medical_escort: "medical escort",
      companionship: "companionship", equipment_rental_delivery: "equipment delivery",
      welfare_check: "welfare check", emergency: "emergency" },
    sources: { entitlement: "subsidy", package: "package", out_of_pocket: "out of pocket",
      time_credits: "time credits" },
  },
};

let lang = localStorage.getItem("homecare-dashboard-lang") || "zh";

export function language() { return lang; }

export function setLanguage(next) {
  lang = next;
  localStorage.setItem("homecare-dashboard-lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

export function t(key, vars = {}) {
  let text = STRINGS[lang][key] ?? STRINGS.zh[key] ?? key;
  for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, value);
  return text;
}

export function word(group, key) {
  return STRINGS[lang][group]?.[key] ?? key;
}

export function translatePage() {
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
}
