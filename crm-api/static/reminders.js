// The reminder form: fills the time zone with the browser's, previews the next five runs of the
// chosen schedule in that zone (GET /api/v1/reminders/preview) as the user types, and suggests
// contacts for the recipients: what is typed after the last comma is looked up
// (GET /api/v1/contacts/autocomplete) and each suggestion completes the field with that contact.
(function () {
  "use strict";
  var form = document.getElementById("reminder-form");
  if (!form) return;
  var schedule = document.getElementById("schedule");
  var custom = document.getElementById("custom_schedule");
  var zone = document.getElementById("time_zone");
  var preview = document.getElementById("preview");
  if (zone && !zone.value) {
    try { zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* keep UTC */ }
  }

  function show(items) {
    preview.textContent = "";
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      preview.appendChild(li);
    });
  }

  // The preview's runs in the chosen zone, in the format of every time (app.js, which also formats
  // the list's times, each row's in its own zone).
  function format(instant, tz) {
    return window.borcelleTime ? window.borcelleTime(instant, tz || "UTC") : instant;
  }

  var contacts = document.getElementById("contacts");
  var suggestions = document.getElementById("contact-suggestions");
  var lookedUp = 0;
  if (contacts && suggestions) {
    contacts.addEventListener("input", function () {
      var value = contacts.value;
      var cut = value.lastIndexOf(",");
      var before = cut < 0 ? "" : value.slice(0, cut + 1) + " ";
      var typed = value.slice(cut + 1).trim();
      if (typed.length < 2) { suggestions.textContent = ""; return; }
      var mine = ++lookedUp;
      fetch("/api/v1/contacts/autocomplete?q=" + encodeURIComponent(typed), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : { suggestions: [] }; })
        .then(function (json) {
          if (mine !== lookedUp) return;
          suggestions.textContent = "";
          (json.suggestions || []).forEach(function (s) {
            var option = document.createElement("option");
            option.value = (before + s.name + " <" + s.email + ">, ").replace(/^\s+/, "");
            option.label = s.name + " <" + s.email + ">";
            suggestions.appendChild(option);
          });
        })
        .catch(function () { /* the field still takes typed emails */ });
    });
  }

  var timer = null;
  var asked = 0;
  function refresh() {
    var cron = schedule.value === "custom" ? custom.value.trim() : schedule.value;
    if (!cron) { show(["Choose a schedule to see its next runs."]); return; }
    var tz = zone.value.trim() || "UTC";
    var query = "schedule=" + encodeURIComponent(cron) + "&timeZone=" + encodeURIComponent(tz) + "&count=5";
    var mine = ++asked;
    fetch("/api/v1/reminders/preview?" + query, { credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return [response.ok, body]; }); })
      .then(function (result) {
        if (mine !== asked) return;
        if (result[0]) {
          show(result[1].runs.map(function (run) { return format(run, tz); }));
        } else {
          show([(result[1].error && result[1].error.message) || "This schedule is not valid."]);
        }
      })
      .catch(function () { if (mine === asked) show(["The preview is not available right now."]); });
  }
  function later() { clearTimeout(timer); timer = setTimeout(refresh, 250); }
  [schedule, custom, zone].forEach(function (input) {
    input.addEventListener("input", later);
    input.addEventListener("change", later);
  });
  refresh();
})();
