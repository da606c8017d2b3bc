// Enrollment pages: copy buttons and showing only the form fields that apply.
// A static file because the CSP allows scripts from 'self' only (no inline scripts).
(function () {
  "use strict";

  function valueOf(form, name) {
    var el = form.elements.namedItem(name);
    if (!el) return "";
    if (el.type === "checkbox") return el.checked ? "on" : "off";
    return el.value;
  }

  function applyConditions(form) {
    form.querySelectorAll("[data-show-when]").forEach(function (block) {
      var show = block.getAttribute("data-show-when").split("&").every(function (cond) {
        var parts = cond.split("=");
        var el = form.elements.namedItem(parts[0]);
        return !el || valueOf(form, parts[0]) === parts[1];
      });
      block.hidden = !show;
    });
  }

  function setup(root) {
    root.querySelectorAll("form.record-form").forEach(function (form) {
      if (form.dataset.conditionsReady) return;
      form.dataset.conditionsReady = "1";
      form.addEventListener("change", function () { applyConditions(form); });
      applyConditions(form);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy-target"));
    if (!field || !navigator.clipboard) return;
    navigator.clipboard.writeText(field.value).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  document.addEventListener("DOMContentLoaded", function () { setup(document); });
  document.addEventListener("htmx:afterSwap", function (event) { setup(event.target); });
})();
