// Service worker of the caregiver page: the app shell and the last route stay usable offline.
// Network first (a caregiver should see today's changes when there is signal), the cache when
// the network fails. Only GETs are touched: check-ins travel through the page's own queue.
const SHELL = "caregiver-shell-v4";
const DATA = "caregiver-data-v4";
// The log-in script is shared by every page of the service (outside this scope): kept here
// too, so that the page starts offline with the token it has.
const LOGIN = "/auth/login.js";
const ASSETS = ["./", "app.js", "queue.js", "i18n.js", "map.js", "app.css", "icon.svg",
  "manifest.webmanifest", LOGIN];

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

// A weak signal can keep a request hanging: after this long, answer from the cache and let the
// network finish in the background (it refreshes the cache for the next time).
const NETWORK_WAIT_MS = 4000;

function fromCache(cached) {
  // Say so, with when the server sent it: the page shows "offline, saved at ...".
  const headers = new Headers(cached.headers);
  headers.set("X-Served-From-Cache", cached.headers.get("Date") || "unknown");
  return new Response(cached.body, { status: cached.status, statusText: cached.statusText,
    headers });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== location.origin) return;
  const shell = url.pathname.startsWith(new URL("./", self.registration.scope).pathname)
    || url.pathname === LOGIN;
  if (!shell && !isRoute(url)) return;
  // The shell ignores the query (?date=); a route is kept per caregiver and date.
  const key = shell ? url.pathname : request;
  const network = (async () => {
    const response = await fetch(request);
    if (response.ok) {
      const cache = await caches.open(shell ? SHELL : DATA);
      await cache.put(key, response.clone());
      if (!shell) await forgetOtherDays(cache, url); // keep only the last route per caregiver
    }
    return response;
  })();
  event.waitUntil(network.catch(() => undefined));
  event.respondWith((async () => {
    try {
      return await Promise.race([network, new Promise((_, reject) => {
        setTimeout(() => reject(new Error("network too slow")), NETWORK_WAIT_MS);
      })]);
    } catch (error) {
      const cached = await (await caches.open(shell ? SHELL : DATA)).match(key);
      return cached ? fromCache(cached) : network; // nothing saved: wait for the network
    }
  })());
});
