// Service worker of the caregiver page: the app shell and the last route stay usable offline.
// Network first (a caregiver should see today's changes when there is signal), the cache when
// the network fails. Only GETs are touched: check-ins travel through the page's own queue.
const SHELL = "caregiver-shell-v2";
const DATA = "caregiver-data-v2";
const ASSETS = ["./", "app.js", "queue.js", "i18n.js", "map.js", "app.css", "icon.svg",
  "manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(ASSETS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== DATA).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

async function forgetOtherDays(cache, url) {
  for (const key of await cache.keys()) {
    const other = new URL(key.url);
    if (other.pathname === url.pathname && other.search !== url.search) await cache.delete(key);
  }
}

function isRoute(url) {
  return /^\/dispatch\/caregivers\/[^/]+\/route$/.test(url.pathname);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== location.origin) return;
  const shell = url.pathname.startsWith(new URL("./", self.registration.scope).pathname);
  if (!shell && !isRoute(url)) return;
  event.respondWith((async () => {
    const cache = await caches.open(shell ? SHELL : DATA);
    try {
      const response = await fetch(request);
      if (response.ok) {
        await cache.put(shell ? url.pathname : request, response.clone());
        if (!shell) await forgetOtherDays(cache, url); // keep only the last route per caregiver
      }
      return response;
    } catch (error) {
      // The shell ignores the query (?date=); a route is kept per caregiver and date.
      const cached = shell ? await cache.match(url.pathname) : await cache.match(request);
      if (!cached) throw error;
      // Say so, with when the server sent it: the page shows "offline, saved at ...".
      const headers = new Headers(cached.headers);
      headers.set("X-Served-From-Cache", cached.headers.get("Date") || "unknown");
      return new Response(cached.body, { status: cached.status, statusText: cached.statusText,
        headers });
    }
  })());
});
