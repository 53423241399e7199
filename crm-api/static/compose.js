// Attachments on the compose form: each chosen file is uploaded at once (POST /api/v1/attachments
// with the session's CSRF token), and the form sends the ids of those that were accepted, in
// order. The field shows only when this script runs; without it a message goes without files.
(function () {
  "use strict";
  var field = document.getElementById("attachments-field");
  var input = document.getElementById("attachments");
  var ids = document.getElementById("attachment_ids");
  var status = document.getElementById("attachments-status");
  if (!field || !input || !ids || !status || !window.fetch || !window.FormData) return;
  var form = input.form;
  var csrf = form.querySelector('input[name="csrf_token"]');
  var submit = form.querySelector('button[type="submit"]');
  var accepted = [];
  var pending = 0;
  field.hidden = false;

  function line(text, error) {
    var li = document.createElement("li");
    li.textContent = text;
    if (error) li.className = "error";
    status.appendChild(li);
    return li;
  }

  function size(bytes) {
    return bytes < 1024 * 1024 ? Math.ceil(bytes / 1024) + " KB" : (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  input.addEventListener("change", function () {
    Array.prototype.forEach.call(input.files, function (file) {
      var li = line("Uploading " + file.name + " (" + size(file.size) + ")…");
      var body = new FormData();
      body.append("file", file, file.name);
      pending++;
      submit.disabled = true;
      fetch("/api/v1/attachments", {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf ? csrf.value : "" }
      })
        .then(function (response) { return response.json().then(function (json) { return [response.ok, json]; }); })
        .then(function (result) {
          if (result[0]) {
            accepted.push(result[1].id);
            ids.value = accepted.join(",");
            li.textContent = result[1].filename + " (" + size(result[1].size) + ") attached";
          } else {
            li.textContent = file.name + ": " + ((result[1].error && result[1].error.message) || "refused");
            li.className = "error";
          }
        })
        .catch(function () { li.textContent = file.name + ": the upload failed; try again"; li.className = "error"; })
        .then(function () { pending--; submit.disabled = pending > 0; });
    });
    input.value = "";
  });
})();
