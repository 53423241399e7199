// Borcelle's progressive JavaScript: one WebSocket per tab for live events. Pages work without it.
// - keeps the notification bell's unread count current and shows events as toasts;
// - re-dispatches every event as a `borcelle:event` DOM event, so page scripts (a progress bar)
//   can follow them without opening sockets of their own;
// - reconnects with backoff, sending the id of the last event it saw (`/ws?after=<id>`): the server then replays
//   what this tab missed ("resumed"), or says "resync" and sends a fresh snapshot when it no longer can;
//   events are hints, counts come from the server's snapshot.
// Narrow screens show each table row as a block (app.css): every cell is labelled with its
// column's heading, so nothing is lost without the header row.
(function () {
  "use strict";
  document.querySelectorAll("table").forEach(function (table) {
    var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      // A heading for screen readers only (an actions column) labels nothing visibly.
      if (th.querySelector(".sr-only")) return "";
      // Without what is hidden from screen readers (a sort arrow).
      var text = th.cloneNode(true);
      text.querySelectorAll('[aria-hidden="true"]').forEach(function (node) { node.remove(); });
      return text.textContent.trim();
    });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.prototype.forEach.call(row.children, function (cell, i) {
        if (heads[i] && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", heads[i]);
      });
    });
  });
})();

// The main menu marks the section this page is in.
(function () {
  "use strict";
  var path = window.location.pathname;
  var best = null;
  document.querySelectorAll('nav[aria-label="Main"] a[href^="/"]').forEach(function (link) {
    var href = link.getAttribute("href");
    var inside = href === "/" ? path === "/" : path === href || path.indexOf(href + "/") === 0;
    if (inside && (!best || href.length > best.getAttribute("href").length)) best = link;
  });
  if (best) best.setAttribute("aria-current", "page");
})();

// A form that deletes or cancels says so first (data-confirm holds the question); the server
// redirects with a notice once it is done.
document.addEventListener("submit", function (e) {
  var form = e.target;
  var question = form && form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) e.preventDefault();
});

// Times: every <time data-local="RFC 3339"> shows in one format, in the account's time zone
// (body[data-tz]) or else the browser's, and a thing with a zone of its own (a reminder's run,
// data-zone) in that zone, named. The exact time, with seconds and zone, is the title (hover).
(function () {
  "use strict";
  var body = document.body;
  var account = (body && body.dataset.tz) || undefined;
  var year = new Date().getFullYear();

  function text(instant, zone) {
    var when = new Date(instant);
    if (isNaN(when.getTime())) return null;
    var tz = zone || account;
    var options = {
      timeZone: tz, weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
      timeZoneName: zone ? "short" : undefined
    };
    if (when.getFullYear() !== year) options.year = "numeric";
    return new Intl.DateTimeFormat(undefined, options).format(when);
  }

  function exact(instant, zone) {
    return new Intl.DateTimeFormat(undefined, {
      timeZone: zone || account, weekday: "long", year: "numeric", month: "long", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "long"
    }).format(new Date(instant));
  }

  function format(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (node) {
      if (!node.dataset.local) return;
      try {
        var shown = text(node.dataset.local, node.dataset.zone);
        if (shown === null) return;
        node.textContent = shown;
        node.title = exact(node.dataset.local, node.dataset.zone);
      } catch (e) { /* an unknown zone: keep the server's text */ }
    });
  }

  // The account page names the zone an empty choice means.
  var browserZone = document.getElementById("browser-zone");
  if (browserZone) {
    try { browserZone.textContent = " (" + Intl.DateTimeFormat().resolvedOptions().timeZone + ")"; } catch (e) { /* unnamed */ }
  }

  window.borcelleTime = function (instant, zone) {
    try { return text(instant, zone) || instant; } catch (e) { return instant; }
  };
  window.borcelleTimes = format;
  format(document);
})();

(function () {
  "use strict";
  var body = document.body;
  if (!body || body.dataset.user !== "1") return;
  var bell = document.getElementById("bell-count");
  var toasts = document.getElementById("toasts");
  var unread = 0;

  function setUnread(n) {
    unread = Math.max(0, n | 0);
    if (!bell) return;
    bell.textContent = String(unread);
    bell.hidden = unread === 0;
    var link = document.getElementById("bell");
    if (link) link.setAttribute("aria-label", "Notifications, " + unread + " unread");
  }

  function toast(title, text, severity) {
    if (!toasts) return;
    var item = document.createElement("div");
    item.className = "toast " + (severity || "info");
    item.setAttribute("role", severity === "critical" ? "alert" : "status");
    var strong = document.createElement("strong");
    strong.textContent = title;
    item.appendChild(strong);
    if (text) {
      var p = document.createElement("p");
      p.textContent = text;
      item.appendChild(p);
    }
    var close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.textContent = "Dismiss";
    close.addEventListener("click", function () { item.remove(); });
    item.appendChild(close);
    toasts.appendChild(item);
    setTimeout(function () { item.remove(); }, 8000);
  }

  // The newest event id this tab has seen (the snapshot carries the one it reflects).
  var lastId = "";

  // The unread notifications already counted, by id: a notification that the snapshot counted
  // and that then also arrives as a live event (a reconnect) is not counted twice.
  var counted = {};

  function handle(event) {
    if (typeof event.id === "string" && event.id) lastId = event.id;
    document.dispatchEvent(new CustomEvent("borcelle:event", { detail: event }));
    switch (event.type) {
      case "snapshot":
        counted = {};
        (event.notifications || []).forEach(function (n) { if (n && n.id) counted[n.id] = true; });
        setUnread(event.unread);
        break;
      case "notification":
        var id = event.notification && event.notification.id;
        if (id && counted[id]) break;
        if (id) counted[id] = true;
        setUnread(unread + 1);
        if (event.notification) toast(event.notification.title, event.notification.body, "info");
        break;
      case "broadcast":
        setUnread(unread + 1);
        toast(event.title, event.body, event.severity);
        break;
    }
  }

  var delay = 500;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket;
    try {
      var resume = lastId ? "?after=" + encodeURIComponent(lastId) : "";
      socket = new WebSocket(scheme + location.host + "/ws" + resume);
    } catch (e) {
      return;
    }
    socket.addEventListener("open", function () { delay = 500; body.dataset.live = "1"; });
    socket.addEventListener("message", function (message) {
      try { handle(JSON.parse(message.data)); } catch (e) { /* not JSON: ignore */ }
    });
    socket.addEventListener("close", function () {
      body.dataset.live = "0";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    });
  }
  connect();
})();
