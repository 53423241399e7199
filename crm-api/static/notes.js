// A note's send: follows the task's progress events from the tab's WebSocket (app.js re-dispatches
// them as `borcelle:event`) and turns the bar into the result. Events are hints: on (re)connect
// the task is read once from the API, so a missed event never leaves a wrong number.
(function () {
  "use strict";
  var card = document.getElementById("progress-card");
  if (!card) return;
  var taskId = card.dataset.task;
  var bar = document.getElementById("task-progress");
  var text = document.getElementById("task-text");
  var retry = document.getElementById("retry-form");

  function show(task) {
    var suppressed = task.suppressed || 0;
    var done = task.sent + task.failed + suppressed;
    var skipped = suppressed > 0 ? ", " + suppressed + " suppressed (unsubscribed or bounced)" : "";
    bar.max = Math.max(1, task.total);
    bar.value = done;
    if (task.status === "done") {
      text.textContent = task.sent + " sent, " + task.failed + " failed" + skipped + (task.failed > 0 ? " — retry below" : "");
      card.dataset.state = "done";
      if (retry) retry.hidden = task.failed === 0;
    } else {
      text.textContent = done + " of " + task.total + " done: " + task.sent + " sent, " + task.failed + " failed" + skipped;
      card.dataset.state = "running";
      if (retry) retry.hidden = true;
    }
  }

  // Counts what has been shown: a read that was in flight while a live event was shown may have
  // been answered before that event (a send of two finishes in milliseconds), so it is dropped
  // rather than allowed to turn "done" back into "running". The subscription was open before the
  // read started, so any later change still arrives as an event.
  var shown = 0;

  function reload() {
    var asked = shown;
    fetch("/api/v1/tasks/" + encodeURIComponent(taskId), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (task) { if (task && asked === shown) { shown += 1; show(task); } })
      .catch(function () { /* the next event or reconnect tries again */ });
  }

  document.addEventListener("borcelle:event", function (e) {
    var event = e.detail || {};
    if (event.type === "snapshot") reload();
    if (event.type === "task_progress" && event.task_id === taskId) { shown += 1; show(event); }
  });
})();
