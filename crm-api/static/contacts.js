// Borcelle contacts pages, progressive: every page works without this file.
// - The search box becomes an ARIA 1.2 combobox (https://www.w3.org/WAI/ARIA/apg/patterns/combobox/):
//   from 2 typed characters it lists suggestions from /api/v1/contacts/autocomplete in a listbox;
//   ArrowDown/ArrowUp move through them, Enter opens the chosen contact, Escape closes the list
//   (or clears the box when it is closed), a click opens a contact. Enter with no suggestion
//   chosen submits the search form as usual.
// - The CSV import form is sent with the X-CSRF-Token header (a multipart body carries no token
//   the server reads), and the report replaces the form.
// - A contact's timeline reloads when the live events say one of its messages progressed.
(function () {
  "use strict";

  var MIN_CHARS = 2;
  var DEBOUNCE_MS = 120;

  function combobox(root) {
    var input = root.querySelector("input[type=search]");
    var list = root.querySelector("[role=listbox]");
    var status = root.querySelector("[role=status]");
    if (!input || !list) return;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", list.id);

    var options = [];
    var active = -1;
    var timer = null;
    var controller = null;
    var asked = "";

    function say(text) { if (status) status.textContent = text; }

    function setActive(index) {
      if (active >= 0 && options[active]) options[active].setAttribute("aria-selected", "false");
      active = index;
      if (active >= 0 && options[active]) {
        var option = options[active];
        option.setAttribute("aria-selected", "true");
        input.setAttribute("aria-activedescendant", option.id);
        option.scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function open() {
      if (!options.length) return;
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }

    function close() {
      setActive(-1);
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
    }

    function isOpen() { return !list.hidden; }

    function go(option) {
      if (option && option.dataset.href) window.location.assign(option.dataset.href);
    }

    function render(suggestions) {
      list.textContent = "";
      options = [];
      active = -1;
      input.removeAttribute("aria-activedescendant");
      suggestions.forEach(function (s, i) {
        var li = document.createElement("li");
        li.id = list.id + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.href = "/contacts/" + encodeURIComponent(s.id);
        var name = document.createElement("span");
        name.textContent = s.name;
        var detail = document.createElement("small");
        detail.textContent = s.company ? s.email + " · " + s.company : s.email;
        li.appendChild(name);
        li.appendChild(detail);
        // mousedown would move the focus out of the box (and close the list) before the click.
        li.addEventListener("mousedown", function (e) { e.preventDefault(); });
        li.addEventListener("click", function () { go(li); });
        li.addEventListener("mousemove", function () { if (active !== i) setActive(i); });
        list.appendChild(li);
        options.push(li);
      });
      if (options.length) {
        open();
        say(options.length + (options.length === 1 ? " suggestion" : " suggestions") + ", use the arrow keys to choose");
      } else {
        close();
        say("No suggestions");
      }
    }

    function fetchSuggestions(typed) {
      if (controller) controller.abort();
      controller = typeof AbortController === "function" ? new AbortController() : null;
      asked = typed;
      fetch("/api/v1/contacts/autocomplete?q=" + encodeURIComponent(typed), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        signal: controller ? controller.signal : undefined
      })
        .then(function (response) { return response.ok ? response.json() : { suggestions: [] }; })
        .then(function (body) {
          // An answer for text the box no longer holds is dropped.
          if (typed !== input.value.trim()) return;
          root.dataset.ready = typed;
          render(body.suggestions || []);
        })
        .catch(function () { /* aborted or offline: the search button still works */ });
    }

    input.addEventListener("input", function () {
      var typed = input.value.trim();
      clearTimeout(timer);
      if (typed.length < MIN_CHARS) {
        if (controller) controller.abort();
        asked = "";
        render([]);
        say("");
        return;
      }
      if (typed === asked) return;
      timer = setTimeout(function () { fetchSuggestions(typed); }, DEBOUNCE_MS);
    });

    input.addEventListener("keydown", function (e) {
      switch (e.key) {
        case "ArrowDown":
          if (!options.length) return;
          e.preventDefault();
          if (!isOpen()) { open(); setActive(0); return; }
          setActive(active + 1 < options.length ? active + 1 : 0);
          break;
        case "ArrowUp":
          if (!options.length) return;
          e.preventDefault();
          if (!isOpen()) { open(); setActive(options.length - 1); return; }
          setActive(active > 0 ? active - 1 : options.length - 1);
          break;
        case "Enter":
          if (isOpen() && active >= 0) { e.preventDefault(); go(options[active]); }
          break;
        case "Escape":
          if (isOpen()) { e.preventDefault(); close(); }
          else if (input.value) { e.preventDefault(); input.value = ""; render([]); say(""); }
          break;
        case "Tab":
          close();
          break;
      }
    });

    input.addEventListener("blur", function () { close(); });
    input.addEventListener("focus", function () { if (input.value.trim().length >= MIN_CHARS) open(); });
  }

  function enhanceImport(form) {
    form.addEventListener("submit", function (e) {
      var token = form.querySelector("input[name=csrf_token]");
      if (!window.fetch || !window.FormData || !token) return;
      e.preventDefault();
      if (form.getAttribute("aria-busy") === "true") return;
      form.setAttribute("aria-busy", "true");
      var button = form.querySelector("button[type=submit]");
      var label = button ? button.textContent : "";
      if (button) button.textContent = "Importing…";
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": token.value },
        body: new FormData(form)
      })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          var page = new DOMParser().parseFromString(html, "text/html");
          var main = page.getElementById("main");
          if (!main) throw new Error("no page in the answer");
          document.getElementById("main").innerHTML = main.innerHTML;
          document.title = page.title;
          var heading = document.querySelector("#main h1");
          if (heading) heading.focus();
          var again = document.getElementById("import-form");
          if (again) enhanceImport(again);
        })
        .catch(function () {
          form.removeAttribute("aria-busy");
          if (button) button.textContent = label;
          window.alert("The import could not be sent. Check your connection and try again.");
        });
    });
  }

  function liveTimeline(section) {
    var timer = null;
    // Only the newest read is applied: an older one answered late would show older states.
    var asked = 0;
    function reload() {
      var mine = ++asked;
      fetch(window.location.pathname, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html || mine !== asked) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("timeline");
          if (fresh) {
            section.innerHTML = fresh.innerHTML;
            if (window.borcelleTimes) window.borcelleTimes(section);
          }
        })
        .catch(function () { /* the Refresh link still works */ });
    }
    // Messages whose state may still change.
    function unsettled() {
      return section.querySelector(".status-queued, .status-sending, .status-retrying") !== null;
    }
    document.addEventListener("borcelle:event", function (e) {
      var event = e.detail || {};
      // A snapshot comes when the socket (re)connects: whatever happened before it (a send that
      // finished before this page's socket was open) is read again if the timeline still waits.
      if (event.type === "snapshot" || event.type === "resync") {
        if (unsettled()) {
          clearTimeout(timer);
          timer = setTimeout(reload, 300);
        }
        return;
      }
      // Mail that came back for this contact (a reply, an automatic answer, a bounce).
      if (event.type === "inbound") {
        if (event.contact_id !== section.getAttribute("data-contact")) return;
        clearTimeout(timer);
        timer = setTimeout(reload, 100);
        return;
      }
      if (event.type !== "task_progress" || !event.task_id) return;
      if (!section.querySelector('[data-task="' + event.task_id + '"]')) return;
      clearTimeout(timer);
      timer = setTimeout(reload, 300);
    });
  }

  // The table's selection: a count of the ticked rows, a box that ticks the whole page, and the
  // tag field only for the actions that take one. The server confirms every action with its count.
  function bulkForm(form) {
    var rows = form.querySelectorAll('tbody input[type=checkbox][name="id"]');
    var page = document.getElementById("select-page");
    var count = document.getElementById("selected-count");
    var selected = document.getElementById("apply-selected");
    var action = document.getElementById("bulk-action");
    var labelField = document.getElementById("bulk-label-field");
    var total = form.querySelector("#apply-all") ? document.getElementById("total").dataset.total : "0";
    function ticked() {
      var n = 0;
      for (var i = 0; i < rows.length; i++) if (rows[i].checked) n++;
      return n;
    }
    function update() {
      var n = ticked();
      count.textContent = n === 0 ? "Tick contacts below, or apply to all " + total + "." : n + " selected";
      selected.disabled = n === 0;
      selected.textContent = n === 0 ? "Apply to selected…" : "Apply to " + n + " selected…";
      page.checked = n > 0 && n === rows.length;
      page.indeterminate = n > 0 && n < rows.length;
      for (var i = 0; i < rows.length; i++) {
        var row = rows[i].closest("tr");
        if (row) row.classList.toggle("picked", rows[i].checked);
      }
    }
    function showLabel() {
      var needs = action.value === "tag" || action.value === "untag";
      labelField.hidden = !needs;
      document.getElementById("bulk-label").required = needs;
    }
    page.addEventListener("change", function () {
      for (var i = 0; i < rows.length; i++) rows[i].checked = page.checked;
      update();
    });
    for (var i = 0; i < rows.length; i++) rows[i].addEventListener("change", update);
    action.addEventListener("change", showLabel);
    update();
    showLabel();
  }

  var boxes = document.querySelectorAll("[data-combobox]");
  for (var i = 0; i < boxes.length; i++) combobox(boxes[i]);
  var bulk = document.getElementById("bulk-form");
  if (bulk) bulkForm(bulk);
  var importForm = document.getElementById("import-form");
  if (importForm) enhanceImport(importForm);
  var timeline = document.getElementById("timeline");
  if (timeline && timeline.dataset.contact) liveTimeline(timeline);
})();
