// Log in for the pages: keeps the bearer token (localStorage), adds it to the page's requests,
// and asks for user name and password when the server says there is none or it expired (401).
// Served by every service at /auth/login.js; no framework, no CDN. Load it with a classic
// <script src="/auth/login.js"> before the page's own scripts.
//
//   homecareAuth.fetch(url, options)  fetch() with the token; on 401 log in and send it again
//   homecareAuth.streamUrl(url)        an EventSource URL carrying the token (?access_token=)
//   homecareAuth.recheck()             after a stream was refused: log in if the token is bad
//   homecareAuth.claims()              the token's claims (role, caregiver_id, ...) or null
//   homecareAuth.logoutButton(button)  a button that shows who is logged in and logs out
//   window "homecare:login" event      after every log-in (event.detail = the new claims)
(function () {
  "use strict";
  const KEY = "homecare.token";
  // "Later" puts off the form for requests the page makes by itself (periodic syncs, stream
  // reconnects) for this long; the page's own login() calls still show it.
  const LATER_MS = 5 * 60 * 1000;
  let pending = null;
  let laterUntil = 0;

  function token() { return localStorage.getItem(KEY); }
  function logout() { localStorage.removeItem(KEY); }

  const TEXT = {
    title: "登录 Log in", user: "用户名 User name", password: "密码 Password",
    submit: "登录", later: "稍后 Later", wrong: "用户名或密码错误 (wrong user name or password)",
    noIssuer: "本服务器不签发令牌，请在统一身份认证处登录 (log in at the identity provider)",
    offline: "网络不可用，请稍后再试 (offline)", failed: "登录失败 (log-in failed)",
    expired: "登录已过期，请重新登录 (please log in again)", logout: "退出登录",
  };

  function form(reason) {
    const box = document.createElement("div");
    box.id = "homecare-login";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "true");
    box.setAttribute("aria-label", TEXT.title);
    box.style.cssText = "position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;" +
      "align-items:center;justify-content:center;z-index:10000;font:16px system-ui,sans-serif";
    box.innerHTML =
      '<form style="background:#fff;color:#111;padding:1.2em 1.4em;border-radius:10px;' +
      'min-width:16em;max-width:92vw">' +
      '<h2 style="margin:0 0 .6em;font-size:1.2em"></h2>' +
      '<p class="login-reason" style="margin:0 0 .4em;color:#555"></p>' +
      '<label style="display:block;margin:.4em 0"><span class="u"></span><br>' +
      '<input name="username" autocomplete="username" required autocapitalize="off" ' +
      'style="width:100%;font-size:1em;box-sizing:border-box"></label>' +
      '<label style="display:block;margin:.4em 0"><span class="p"></span><br>' +
      '<input name="password" type="password" autocomplete="current-password" required ' +
      'style="width:100%;font-size:1em;box-sizing:border-box"></label>' +
      '<p class="login-error" role="alert" style="color:#b00020;min-height:1.2em;margin:.3em 0"></p>' +
      '<button type="submit" class="login-submit" style="font-size:1em;padding:.4em 1.2em"></button> ' +
      '<button type="button" class="login-later" style="font-size:1em;padding:.4em .8em;' +
      'background:none;border:0;color:#0b6e4f"></button></form>';
    box.querySelector("h2").textContent = TEXT.title;
    box.querySelector(".login-reason").textContent = reason || "";
    box.querySelector(".u").textContent = TEXT.user;
    box.querySelector(".p").textContent = TEXT.password;
    box.querySelector(".login-submit").textContent = TEXT.submit;
    box.querySelector(".login-later").textContent = TEXT.later;
    return box;
  }

  function problem(status, data) {
    if (status === 401) return TEXT.wrong;
    if (status === 404) return TEXT.noIssuer;
    const detail = typeof data.detail === "string" ? data.detail : "";
    return `${TEXT.failed} ${status}${detail ? ": " + detail : ""}`;
  }

  // Ask once even if several requests find they need a token at the same moment. Resolves to
  // the new token, or null when the user chose "later" (the pages keep working offline and
  // their requests get the server's 401 back).
  function login(reason) {
    if (pending) return pending;
    pending = new Promise((resolve) => {
      const box = form(reason);
      document.body.appendChild(box);
      const f = box.querySelector("form");
      const done = (value) => { box.remove(); pending = null; resolve(value); };
      f.username.focus();
      box.querySelector(".login-later").addEventListener("click", () => {
        laterUntil = Date.now() + LATER_MS;
        done(null);
      });
      f.addEventListener("submit", async (event) => {
        event.preventDefault();
        const error = box.querySelector(".login-error");
        error.textContent = "";
        try {
          const answer = await fetch("/auth/token", {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({ username: f.username.value.trim(),
              password: f.password.value }),
          });
          const data = await answer.json().catch(() => ({}));
          if (!answer.ok || !data.access_token) {
            error.textContent = problem(answer.status, data);
            f.password.value = "";
            f.password.focus();
            return;
          }
          localStorage.setItem(KEY, data.access_token);
          laterUntil = 0;
          done(data.access_token);
          window.dispatchEvent(new CustomEvent("homecare:login", { detail: claims() }));
        } catch (e) {
          error.textContent = TEXT.offline;
        }
      });
    });
    return pending;
  }

  function withToken(options) {
    const headers = new Headers((options && options.headers) || {});
    const t = token();
    if (t) headers.set("authorization", "Bearer " + t);
    return Object.assign({}, options || {}, { headers });
  }

  // fetch() with the token; on 401 log in and send it once more. Without a token the request
  // is still sent: an offline page is answered by its service worker, and the server says
  // 401 when it wants one. The body must be resendable (a string, not a stream).
  async function authFetch(url, options) {
    const sent = token();
    let answer = await fetch(url, withToken(options));
    if (answer.status === 401) {
      // Another request may have logged in meanwhile: then only send it again.
      if (token() === sent) {
        if (sent) logout();
        if (Date.now() < laterUntil) return answer; // the user said "later"
        if (!(await login(sent ? TEXT.expired : ""))) return answer;
      }
      answer = await fetch(url, withToken(options));
    }
    return answer;
  }

  // After an event stream failed: if the server refuses the token, log in (the caller then
  // opens the stream again with streamUrl). Network failures are left to the caller's retry.
  async function recheck() {
    try { await authFetch("/auth/me"); } catch (e) { /* offline: retry later */ }
  }

  // EventSource cannot send headers: streams take the token in the query string.
  function streamUrl(url) {
    const t = token();
    if (!t) return url;
    return url + (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(t);
  }

  function claims() {
    const t = token();
    if (!t) return null;
    try {
      const part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (e) { return null; }
  }

  // A button showing who is logged in; clicking it forgets the token and asks for a log-in.
  // `before()` may return false to keep the user logged in (e.g. unsent records on a phone).
  function logoutButton(button, before) {
    const show = () => {
      const c = claims();
      button.hidden = !c;
      button.textContent = c ? `${TEXT.logout} (${c.name || c.sub})` : TEXT.logout;
    };
    button.addEventListener("click", async () => {
      if (before && (await before()) === false) return;
      logout();
      show();
      await login();
    });
    window.addEventListener("homecare:login", show);
    show();
  }

  window.homecareAuth = { fetch: authFetch, login, logout, token, streamUrl, claims, recheck,
    logoutButton };
})();
