// The home page: moves the progress of each send shown under "Sending now" from the tab's live
// events (app.js re-dispatches them as `borcelle:event`; app.js also formats every time).
(function () {
  "use strict";
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
