// Live preview of a personalised email: the section [data-preview] names the subject and body
// fields of its form (data-subject, data-body) and either a fixed contact (data-contact) or a
// search box (#preview-contact, suggestions from /api/v1/contacts/autocomplete). Each change asks
// POST /api/v1/messages/preview for the email as that contact would receive it; a template error
// is shown as the server words it (the field, the line and column, the name).
(function () {
  "use strict";
  var section = document.querySelector("[data-preview]");
  if (!section || !window.fetch) return;
  var subject = document.getElementById(section.getAttribute("data-subject"));
  var body = document.getElementById(section.getAttribute("data-body"));
  var search = document.getElementById("preview-contact");
  var options = document.getElementById("preview-contacts");
  var out = section.querySelector(".preview-output");
  var subjectOut = section.querySelector(".preview-subject");
  var textOut = section.querySelector(".preview-text");
  var problem = section.querySelector(".preview-error");
  var csrf = document.querySelector('input[name="csrf_token"]');
  if (!subject || !body || !out) return;
  var contact = section.getAttribute("data-contact") || "";
  var byLabel = {};
  var timer = null;
  var asked = 0; // the latest request: an older answer arriving after it is dropped
  // With a chooser the section shows at once; for a fixed contact, only once there is a preview.
  var fixed = !!contact;
  function show() {
    section.hidden = fixed && out.hidden && problem.hidden;
  }
  show();

  function render() {
    var mine = ++asked;
    if (!contact || !subject.value.trim() || !body.value.trim()) {
      out.hidden = true;
      problem.hidden = true;
      show();
      return;
    }
    fetch("/api/v1/messages/preview", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.value : "" },
      body: JSON.stringify({ contact_id: contact, subject: subject.value, body: body.value })
    }).then(function (response) {
      return response.json().then(function (json) { return { ok: response.ok, json: json }; });
    }).then(function (answer) {
      if (mine !== asked) return;
      if (answer.ok) {
        problem.textContent = "";
        problem.hidden = true;
        subjectOut.textContent = answer.json.subject;
        textOut.textContent = answer.json.text;
        out.hidden = false;
      } else {
        problem.textContent = answer.json.error ? answer.json.error.message : "The preview failed.";
        problem.hidden = false;
        out.hidden = true;
      }
      show();
    }).catch(function () {
      if (mine !== asked) return;
      problem.textContent = "The preview is not available right now.";
      problem.hidden = false;
      show();
    });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(render, 300);
  }

  subject.addEventListener("input", later);
  body.addEventListener("input", later);
  if (search && options) {
    search.addEventListener("input", function () {
      var typed = search.value.trim();
      if (byLabel[typed]) {
        contact = byLabel[typed];
        render();
        return;
      }
      if (typed.length < 2) return;
      fetch("/api/v1/contacts/autocomplete?q=" + encodeURIComponent(typed), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : { suggestions: [] }; })
        .then(function (json) {
          options.textContent = "";
          (json.suggestions || json.contacts || []).forEach(function (s) {
            var label = s.name + " <" + s.email + ">";
            byLabel[label] = s.id;
            var option = document.createElement("option");
            option.value = label;
            options.appendChild(option);
          });
        });
    });
  }
  render();
})();
