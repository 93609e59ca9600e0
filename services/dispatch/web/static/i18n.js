// Words of the page, zh-CN first; English as the toggle. No framework: t(key, vars).
export const STRINGS = {
  zh: {
    title: "护理员签到", signIn: "登录", signOut: "退出", caregiverId: "护理员编号",
    signInHint: "请输入护理员编号（如 C-201）", route: "今日路线", noVisits: "今天没有安排上门服务",
    checkIn: "签到", checkOut: "签退", depart: "出发", navigate: "导航", tasks: "服务项目",
    code: "老人确认码", codeHint: "请老人出示服务卡上的确认码", notes: "备注",
    pending: "待同步 {n} 条", synced: "已全部同步", online: "在线", offline: "离线",
    queuedOffline: "离线：已保存在手机上，联网后自动同步",
    applied: "已提交服务器", duplicate: "服务器已收到过（重复，无影响）",
    rejected: "服务器拒绝：{reason}", chainBroken: "同步被拒绝：第 {n} 条记录在手机上被改动过，记录仍保存在手机上。请联系服务中心。",
    mapApp: "高德地图", familyProxy: "家属代为确认", signature: "老人签名（没有确认码时）",
    clear: "清除", dismiss: "知道了", notSaved: "没有保存：{reason}，请重试",
    insecure: "此页面需要通过 HTTPS 打开，否则无法离线签到", rejectedTitle: "未被服务器接受的记录（{n} 条）",
    clockSkew: "手机时间与服务器相差约 {n} 分钟，请校准手机时间（时间超前的记录会被拒绝）",
    savedRoute: "离线：显示 {time} 保存的路线", loadFailed: "无法加载路线：{reason}",
    locating: "正在定位…", noFix: "未能定位（将标记为位置未核验）", accuracy: "定位精度 ±{m} 米",
    station: "服务站", minutes: "{n} 分钟", syncNow: "立即同步", pendingBadge: "待同步",
    unsyncedSignOut: "还有未同步的记录，联网同步后再退出",
    needLogin: "需要重新登录才能同步，记录仍保存在手机上（点“立即同步”登录）",
    states: { scheduled: "待服务", en_route: "在途", checked_in: "已签到", checked_out: "已签退",
      verified: "已核验", cancelled: "已取消", no_show: "未遇", missed: "漏服务", disputed: "有争议" },
    services: { meal_help: "助餐", meal_delivery: "送餐", cleaning: "助洁", bathing: "助浴",
      mobility: "助行", shopping: "助购", housework: "家务", bed_making: "整理床铺",
      dressing: "穿衣", rehabilitation_nursing: "康复护理", medication_reminder: "提醒服药",
      medical_escort: "陪同就医", companionship: "精神慰藉", equipment_rental_delivery: "辅具配送",
      welfare_check: "探访关爱", emergency: "紧急救助" },
    lang: "EN",
  },
  en: {
    title: "Caregiver check-in", signIn: "Sign in", signOut: "Sign out", caregiverId: "Caregiver id",
    signInHint: "Enter your caregiver id (e.g. C-201)", route: "Today's route",
    noVisits: "No visits today", checkIn: "Check in", depart: "On my way", checkOut: "Check out", navigate: "Navigate",
    tasks: "Tasks", code: "Elder's confirmation code", codeHint: "The code on the elder's card",
    notes: "Notes", pending: "{n} waiting to sync", synced: "All synced", online: "Online",
    offline: "Offline", queuedOffline: "Offline: saved on the phone, will sync when back online",
    applied: "Sent to the server", duplicate: "Already received by the server (harmless)",
    rejected: "Refused by the server: {reason}",
    chainBroken: "Sync refused: record {n} was changed on the phone ({reason}); the records stay on the phone. Call the centre.",
    mapApp: "Map app", familyProxy: "Confirmed by family", clear: "Clear", dismiss: "Dismiss",
    notSaved: "Not saved: {reason}; please try again",
    insecure: "Open this page over HTTPS: offline check-in needs it",
    rejectedTitle: "Records the server did not accept ({n})",
    clockSkew: "The phone's clock is about {n} min off the server's: please set it (records from the future are refused)",
    signature: "Elder's signature (when there is no code)",
    savedRoute: "Offline: route saved at {time}", loadFailed: "Could not load the route: {reason}",
    locating: "Locating…", noFix: "No position (will be flagged: location not verified)",
    accuracy: "Accuracy ±{m} m", station: "Station", minutes: "{n} min", syncNow: "Sync now",
    pendingBadge: "pending", unsyncedSignOut: "Records not synced yet: sync before signing out",
    needLogin: "Log in again to sync; the records stay on the phone (Sync now logs in)",
    states: { scheduled: "Scheduled", en_route: "En route", checked_in: "Checked in",
      checked_out: "Checked out", verified: "Verified", cancelled: "Cancelled",
      no_show: "No show", missed: "Missed", disputed: "Disputed" },
    services: { meal_help: "Meal help", meal_delivery: "Meal delivery", cleaning: "Cleaning",
      bathing: "Bathing", mobility: "Mobility", shopping: "Shopping", housework: "Housework",
      bed_making: "Bed making", dressing: "Dressing",
      rehabilitation_nursing: "Rehabilitation nursing", medication_reminder: "Medication reminder",
      medical_escort: "Medical escort", companionship: "Companionship",
      equipment_rental_delivery: "Equipment delivery", welfare_check: "Welfare check",
      emergency: "Emergency" },
    lang: "中文",
  },
};

let current = localStorage.getItem("lang") === "en" ? "en" : "zh";

export function lang() { return current; }

export function setLang(value) {
  current = value === "en" ? "en" : "zh";
  localStorage.setItem("lang", current);
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
}

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.zh[key] ?? key;
  return String(text).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

// A label from one of the word tables (states, services), the raw value when unknown.
export function label(table, value) {
  return STRINGS[current][table]?.[value] ?? String(value ?? "").replaceAll("_", " ");
}
