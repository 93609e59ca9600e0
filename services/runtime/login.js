// Log in for the pages: keeps the bearer token (localStorage), adds it to the page's requests,
// and asks for user name and password when there is none or the server says it expired (401).
// Served by every service at /auth/login.js; no framework, no CDN.
(function () {
  "use strict";
  const KEY = "homecare.token";
  let pending = null;

  function token() { return localStorage.getItem(KEY); }
  function logout() { localStorage.removeItem(KEY); }

  function form() {
    const box = document.createElement("div");
    box.id = "homecare-login";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-label", "登录 log in");
    box.style.cssText = "position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;" +
      "align-items:center;justify-content:center;z-index:10000;font:16px system-ui,sans-serif";
    box.innerHTML =
      '<form style="background:#fff;padding:1.2em 1.4em;border-radius:10px;min-width:16em">' +
      '<h2 style="margin:0 0 .6em;font-size:1.2em">登录 Log in</h2>' +
      '<label style="display:block;margin:.4em 0">用户名 User<br>' +
      '<input name="username" autocomplete="username" required style="width:100%;font-size:1em"></label>' +
      '<label style="display:block;margin:.4em 0">密码 Password<br>' +
      '<input name="password" type="password" autocomplete="current-password" required ' +
      'style="width:100%;font-size:1em"></label>' +
      '<p class="login-error" role="alert" style="color:#b00020;min-height:1.2em;margin:.3em 0"></p>' +
      '<button type="submit" style="font-size:1em;padding:.4em 1.2em">登录</button></form>';
    return box;
  }

  // Ask once even if several requests find they need a token at the same moment.
  function login() {
    if (pending) return pending;
    pending = new Promise((resolve) => {
      const box = form();
      document.body.appendChild(box);
      const f = box.querySelector("form");
      f.username.focus();
      f.addEventListener("submit", async (event) => {
        event.preventDefault();
        const error = box.querySelector(".login-error");
        error.textContent = "";
        try {
          const answer = await fetch("/auth/token", {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({ username: f.username.value, password: f.password.value }),
          });
          const data = await answer.json().catch(() => ({}));
          if (!answer.ok) { error.textContent = data.detail || ("登录失败 " + answer.status); return; }
          localStorage.setItem(KEY, data.access_token);
          box.remove();
          pending = null;
          resolve(data.access_token);
        } catch (e) {
          error.textContent = "网络不可用，请稍后再试 (offline)";
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

  // fetch() with the token; on 401 log in and repeat once.
  async function authFetch(url, options) {
    if (!token()) await login();
    let answer = await fetch(url, withToken(options));
    if (answer.status === 401) {
      logout();
      await login();
      answer = await fetch(url, withToken(options));
    }
    return answer;
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

  window.homecareAuth = { fetch: authFetch, login, logout, token, streamUrl, claims };
})();
