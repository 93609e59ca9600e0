// The day's timeline: one lane per caregiver, planned bars above, actual bars below, travel
// before each visit, breaks in long gaps, late/overrun colouring; planned bars of visits not
// started can be dragged to another lane or time.
const MOVABLE = new Set(["scheduled", "en_route"]);

function div(cls, parent, attrs = {}) {
  const node = document.createElement("div");
  node.className = cls;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  parent.appendChild(node);
  return node;
}

export function drawGantt(root, view, { t, word, minuteOf, clock, onMove, onSelect }) {
  root.replaceChildren();
  const mins = [7 * 60], maxs = [19 * 60];
  for (const c of view.caregivers) {
    mins.push(toMin(c.shift_start)); maxs.push(toMin(c.shift_end));
  }
  for (const v of view.visits) {
    mins.push(minuteOf(v.planned_start) - (v.travel_minutes || 0));
    maxs.push(minuteOf(v.checked_out_at || v.planned_end));
  }
  const start = Math.max(0, Math.floor(Math.min(...mins) / 60) * 60);
  const end = Math.min(24 * 60, Math.ceil(Math.max(...maxs) / 60) * 60);
  const span = end - start;
  root.dataset.start = start; // minutes since local midnight at the left and right edges
  root.dataset.end = end;
  const pos = (m) => `${((Math.max(start, Math.min(end, m)) - start) / span) * 100}%`;
  const len = (a, b) => `${(Math.max(0, Math.min(end, b) - Math.max(start, a)) / span) * 100}%`;

  const axis = div("lane axis", root);
  div("label", axis);
  const ticks = div("track", axis);
  for (let h = start; h <= end; h += 60) {
    const tick = div("tick", ticks);
    tick.style.left = pos(h);
    tick.textContent = `${String(Math.floor(h / 60)).padStart(2, "0")}:00`;
  }
  const now = minuteOf(view.now);
  for (const c of view.caregivers) {
    const lane = div("lane", root, { "data-caregiver-id": c.caregiver_id });
    if (c.unavailable) lane.classList.add("off");
    const label = div("label", lane);
    label.innerHTML = `<span class="swatch" style="background:${c.colour}"></span>`;
    label.append(c.name);
    const small = document.createElement("small");
    small.textContent = c.unavailable ? `${t("unavailable")}: ${word("off", c.unavailable)}`
      : `${c.shift_start}–${c.shift_end}`;
    label.append(small);
    const track = div("track", lane);
    const shift = div("shift", track);
    shift.style.left = pos(toMin(c.shift_start));
    shift.style.width = len(toMin(c.shift_start), toMin(c.shift_end));
    for (const b of c.breaks) {
      const bar = div("bar break", track);
      bar.style.left = pos(minuteOf(b.start));
      bar.style.width = len(minuteOf(b.start), minuteOf(b.end));
      bar.title = `${t("break")} ${b.minutes}′`;
    }
    for (const v of view.visits.filter((x) => x.caregiver_ids.includes(c.caregiver_id))) {
      const ps = minuteOf(v.planned_start), pe = minuteOf(v.planned_end);
      // A two-person visit shows in both lanes, each with its own way there.
      const travel = c.caregiver_id === v.caregiver_id ? v.travel_minutes : v.partner_travel_minutes;
      if (travel) {
        const tr = div("bar travel", track, { "data-visit-id": v.visit_id });
        tr.style.left = pos(ps - travel);
        tr.style.width = len(ps - travel, ps);
        tr.title = `${t("travel")} ${t("minutes", { n: travel })}`;
      }
      const bar = div(`bar planned state-${v.state}`, track, { "data-visit-id": v.visit_id,
        "data-state": v.state });
      if (v.late) bar.classList.add("late");
      if (v.overrun) bar.classList.add("overrun");
      if (v.priority === "emergency") bar.classList.add("emergency");
      bar.style.left = pos(ps);
      bar.style.width = len(ps, pe);
      bar.style.borderColor = c.colour;
      bar.addEventListener("click", () => onSelect(v.visit_id));
      bar.textContent = `${v.priority === "emergency" ? t("sos") : ""}${v.elder_name} · ` +
        word("services", v.service_type);
      bar.title = `${v.visit_id} ${clock(v.planned_start)}–${clock(v.planned_end)} ` +
        `${word("states", v.state)}${v.late ? " · " + t("late") : ""}${v.overrun ? " · " + t("overrun") : ""}`;
      if (MOVABLE.has(v.state)) {
        bar.draggable = true;
        // Where in the bar it was grabbed (taken on press: dragstart fires after the pointer
        // has already moved), so that the bar's start lands where its left edge is dropped.
        let grabPx = 0;
        bar.addEventListener("pointerdown", (e) => { grabPx = e.clientX - bar.getBoundingClientRect().left; });
        bar.addEventListener("dragstart", (e) => {
          const grab = (grabPx / track.getBoundingClientRect().width) * span;
          e.dataTransfer.setData("text/plain", JSON.stringify({ id: v.visit_id,
            from: c.caregiver_id, grab: Number.isFinite(grab) ? grab : 0 }));
          e.dataTransfer.effectAllowed = "move";
        });
      }
      if (v.checked_in_at) {
        const as = minuteOf(v.checked_in_at);
        const ae = v.checked_out_at ? minuteOf(v.checked_out_at) : Math.max(as + 1, now);
        const actual = div("bar actual", track, { "data-visit-id": v.visit_id });
        if (v.late) actual.classList.add("late");
        if (v.overrun) actual.classList.add("overrun");
        actual.style.left = pos(as);
        actual.style.width = len(as, ae);
        actual.title = `${t("actual")} ${clock(v.checked_in_at)}–${v.checked_out_at ? clock(v.checked_out_at) : "…"}`;
      }
    }
    if (now >= start && now <= end) div("now", track).style.left = pos(now);
    track.addEventListener("dragover", (e) => { e.preventDefault(); lane.classList.add("drop"); });
    track.addEventListener("dragleave", () => lane.classList.remove("drop"));
    track.addEventListener("drop", (e) => {
      e.preventDefault();
      lane.classList.remove("drop");
      let data;
      try { data = JSON.parse(e.dataTransfer.getData("text/plain")); } catch { return; }
      const rect = track.getBoundingClientRect();
      const minute = start + ((e.clientX - rect.left) / rect.width) * span - data.grab;
      onMove(data.id, c.caregiver_id, Math.round(minute / 5) * 5, data.from);
    });
  }
}

function toMin(hhmm) {
  const [h, m] = hhmm.split(":").map(Number);
  return h * 60 + m;
}
