// The home page: moves the progress of each send shown under "Sending now" from the tab's live
// events (app.js re-dispatches them as `borcelle:event`), and shows each time in the reader's
// time zone (a reminder's next run in the reminder's own zone, named).
(function () {
  "use strict";
  document.querySelectorAll("time[data-local]").forEach(function (node) {
    try {
      var zone = node.dataset.zone;
      node.title = node.dataset.local;
      node.textContent = new Intl.DateTimeFormat(undefined, {
        timeZone: zone || undefined, weekday: "short", day: "numeric", month: "short", hour: "2-digit",
        minute: "2-digit", timeZoneName: zone ? "short" : undefined
      }).format(new Date(node.dataset.local));
    } catch (e) { /* keep the server's text */ }
  });

  document.addEventListener("borcelle:event", function (e) {
    var event = e.detail || {};
    if (event.type !== "task_progress") return;
    var item = document.querySelector('#running li[data-task="' + event.task_id + '"]');
    if (!item) return;
    var done = event.sent + event.failed + (event.suppressed || 0);
    var bar = item.querySelector("progress");
    bar.max = Math.max(1, event.total);
    bar.value = done;
    item.querySelector(".task-text").textContent = event.status === "done"
      ? "Done: " + event.sent + " sent, " + event.failed + " failed"
      : done + " of " + event.total + " done: " + event.sent + " sent, " + event.failed + " failed";
  });
})();
