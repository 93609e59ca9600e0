// Service worker of the caregiver page: the app shell and the last route stay usable offline.
// Network first (a caregiver should see today's changes when there is signal), the cache when
// the network fails. Only GETs are touched: check-ins travel through the page's own queue.
const SHELL = "caregiver-shell-v1";
const DATA = "caregiver-data-v1";
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
      if (response.ok) await cache.put(shell ? url.pathname : request, response.clone());
      return response;
    } catch (error) {
      // The shell ignores the query (?date=); a route is kept per caregiver and date.
      const cached = shell ? await cache.match(url.pathname) : await cache.match(request);
      if (cached) return cached;
      throw error;
    }
  })());
});
