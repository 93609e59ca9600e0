// A plain SVG sketch of the day: the station and the visits in order, from lat/lon only
// (no tiles, nothing fetched). Equirectangular projection scaled by cos(latitude).
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

export function drawMap(svg, station, visits, stationLabel) {
  svg.replaceChildren();
  const points = visits.filter((v) => Number.isFinite(v.lat) && Number.isFinite(v.lon));
  const all = station ? [station, ...points] : points;
  if (!all.length) { svg.style.display = "none"; return; }
  svg.style.display = "";
  const W = 360, H = 220, PAD = 22;
  const k = Math.cos((all[0].lat * Math.PI) / 180);
  const xs = all.map((p) => p.lon * k), ys = all.map((p) => p.lat);
  const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
  const span = Math.max(maxX - minX, maxY - minY, 1e-4);
  const scale = Math.min((W - 2 * PAD) / span, (H - 2 * PAD) / span);
  const ox = (W - (maxX - minX) * scale) / 2, oy = (H - (maxY - minY) * scale) / 2;
  const at = (p) => [ox + (p.lon * k - minX) * scale, H - (oy + (p.lat - minY) * scale)];
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.append(el("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
  const path = all.map((p) => at(p).map((n) => n.toFixed(1)).join(",")).join(" ");
  svg.append(el("polyline", { points: path, class: "map-path" }));
  if (station) {
    const [x, y] = at(station);
    svg.append(el("rect", { x: x - 6, y: y - 6, width: 12, height: 12, class: "map-station" }));
    svg.append(el("text", { x: x + 9, y: y + 4, class: "map-label" }, stationLabel));
  }
  points.forEach((p, i) => {
    const [x, y] = at(p);
    const g = el("g", { class: `map-stop state-${p.state}` });
    g.append(el("circle", { cx: x, cy: y, r: 10 }));
    g.append(el("text", { x, y: y + 4, "text-anchor": "middle" }, String(i + 1)));
    svg.append(g);
  });
}
