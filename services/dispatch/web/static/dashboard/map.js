// The area map: Web Mercator projection of lat/lon onto an SVG, so that optional tiles (a
// configured URL with {z}/{x}/{y}) line up; without tiles a clean grid background.
const NS = "http://www.w3.org/2000/svg";
const TILE = 256;

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function world(lat, lon, z) {
  const scale = TILE * 2 ** z;
  const phi = (lat * Math.PI) / 180;
  return [((lon + 180) / 360) * scale,
    ((1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2) * scale];
}

function title(node, text) { el("title", {}, node).textContent = text; }

export function drawMap(svg, view, { t, timeOf }) {
  svg.replaceChildren();
  const points = [];
  for (const c of view.caregivers) points.push([c.station.lat, c.station.lon]);
  for (const e of view.elders) points.push([e.lat, e.lon]);
  for (const c of view.caregivers) if (c.last_position) points.push([c.last_position.lat, c.last_position.lon]);
  if (!points.length) return;
  const width = 600, height = 420, pad = 30;
  const lats = points.map((p) => p[0]), lons = points.map((p) => p[1]);
  // The zoom at which the area fills the box: any zoom on a plain background, a whole one
  // (at most 19) under tiles, which exist only at whole zooms.
  const [x0, y0] = world(Math.max(...lats), Math.min(...lons), 0);
  const [x1, y1] = world(Math.min(...lats), Math.max(...lons), 0);
  const fit = Math.log2(Math.min((width - 2 * pad) / Math.max(x1 - x0, 1e-9),
    (height - 2 * pad) / Math.max(y1 - y0, 1e-9)));
  const z = Math.max(1, Math.min(19, view.tile_url ? Math.floor(fit) : fit));
  const [ax, ay] = world(Math.max(...lats), Math.min(...lons), z);
  const [bx, by] = world(Math.min(...lats), Math.max(...lons), z);
  const ox = (ax + bx) / 2 - width / 2, oy = (ay + by) / 2 - height / 2;
  const at = (lat, lon) => { const [x, y] = world(lat, lon, z); return [x - ox, y - oy]; };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.dataset.zoom = view.tile_url ? z : z.toFixed(2);

  el("rect", { x: 0, y: 0, width, height, class: "map-bg" }, svg);
  if (view.tile_url) {
    const tiles = el("g", { class: "map-tiles" }, svg);
    for (let tx = Math.floor(ox / TILE); tx * TILE < ox + width; tx++) {
      for (let ty = Math.floor(oy / TILE); ty * TILE < oy + height; ty++) {
        const href = view.tile_url.replace("{z}", z).replace("{x}", tx).replace("{y}", ty);
        el("image", { href, x: tx * TILE - ox, y: ty * TILE - oy, width: TILE, height: TILE }, tiles);
      }
    }
  } else {
    const grid = el("g", { class: "map-grid" }, svg);
    for (let x = 0; x <= width; x += 50) el("line", { x1: x, y1: 0, x2: x, y2: height }, grid);
    for (let y = 0; y <= height; y += 50) el("line", { x1: 0, y1: y, x2: width, y2: y }, grid);
  }
  // 1 km scale bar: metres per pixel at this latitude and zoom.
  const mpp = (156543.03392 * Math.cos((lats[0] * Math.PI) / 180)) / 2 ** z;
  const km = 1000 / mpp;
  const scale = el("g", { class: "map-scale" }, svg);
  el("line", { x1: 10, y1: height - 12, x2: 10 + km, y2: height - 12 }, scale);
  el("text", { x: 12, y: height - 16 }, scale).textContent = "1 km";

  const routes = el("g", { class: "map-routes" }, svg);
  const homes = el("g", { class: "map-homes" }, svg);
  const marks = el("g", { class: "map-marks" }, svg);
  const colourOf = Object.fromEntries(view.caregivers.map((c) => [c.caregiver_id, c.colour]));
  const visited = new Map();
  for (const v of view.visits) {
    if (v.state !== "cancelled") visited.set(`${v.lat},${v.lon}`, colourOf[v.caregiver_id]);
  }
  for (const e of view.elders) {
    const [x, y] = at(e.lat, e.lon);
    const dot = el("circle", { cx: x, cy: y, r: 6, class: "map-home", "data-elder-id": e.elder_id,
      fill: visited.get(`${e.lat},${e.lon}`) || "#fff" }, homes);
    title(dot, `${t("home")}: ${e.name} ${e.address || ""}`);
  }
  const stations = new Set();
  for (const c of view.caregivers) {
    const key = `${c.station.lat},${c.station.lon}`;
    if (stations.has(key)) continue;
    stations.add(key);
    const [x, y] = at(c.station.lat, c.station.lon);
    const s = el("rect", { x: x - 8, y: y - 8, width: 16, height: 16, class: "map-station" }, marks);
    title(s, t("station"));
  }
  for (const c of view.caregivers) {
    const stops = view.visits.filter((v) => v.caregiver_ids.includes(c.caregiver_id) && v.state !== "cancelled");
    if (!stops.length) continue;
    const path = [[c.station.lat, c.station.lon], ...stops.map((v) => [v.lat, v.lon]),
      [c.station.lat, c.station.lon]].map(([la, lo]) => at(la, lo).join(",")).join(" ");
    const line = el("polyline", { points: path, class: "map-route", stroke: c.colour,
      "data-caregiver-id": c.caregiver_id }, routes);
    title(line, c.name);
    stops.forEach((v, i) => {
      const [x, y] = at(v.lat, v.lon);
      const label = el("text", { x: x + 8, y: y - 6, class: "map-stop", fill: c.colour,
        "data-visit-id": v.visit_id, "data-caregiver-id": c.caregiver_id }, marks);
      label.textContent = `${i + 1}`;
    });
  }
  for (const u of view.unassigned) {
    const [x, y] = at(u.lat, u.lon);
    const g = el("g", { class: "map-unassigned", "data-order-id": u.order_id }, marks);
    el("circle", { cx: x, cy: y, r: 10 }, g);
    el("text", { x, y: y + 4 }, g).textContent = "!";
    title(g, `${u.elder_name}: ${u.reason}`);
  }
  for (const c of view.caregivers) {
    if (!c.last_position) continue;
    const [x, y] = at(c.last_position.lat, c.last_position.lon);
    const g = el("g", { class: "live-pos", "data-caregiver-id": c.caregiver_id }, marks);
    el("circle", { cx: x, cy: y, r: 11, fill: c.colour, class: "pulse" }, g);
    el("text", { x, y: y + 4 }, g).textContent = [...c.name][0];
    title(g, `${c.name} · ${t("lastSeen", { time: timeOf(c.last_position.at) })}`);
  }
}
