/* Kustos console: progressive enhancement only; every page works without this file.
 * - reveal forms fetch one value in place (same POST, same CSRF field, answered as JSON);
 * - a file chosen in the seal form is read into its textarea (it never leaves the page on its own).
 * No values are stored anywhere by this script; a hidden value is removed from the page.
 */
"use strict";
(function () {
  var MASK = "\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022";

  function hide(form, target, button) {
    target.textContent = MASK;
    target.classList.add("masked");
    button.textContent = "Reveal";
    form.dataset.shown = "";
  }

  function onReveal(event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("reveal")) {
      return;
    }
    var target = document.getElementById(form.dataset.target || "");
    var button = form.querySelector("button");
    if (!target || !button || !window.fetch) {
      return; /* plain form submission */
    }
    event.preventDefault();
    if (form.dataset.shown === "1") {
      hide(form, target, button);
      return;
    }
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
      headers: { "X-Kustos-Console": "reveal", "Accept": "application/json" },
      cache: "no-store"
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          throw new Error(body.error || "the server answered " + response.status);
        }
        target.textContent = body.value;
        target.classList.remove("masked");
        button.textContent = "Hide";
        form.dataset.shown = "1";
      });
    }).catch(function (error) {
      target.textContent = "(" + error.message + ")";
    }).finally(function () {
      button.disabled = false;
    });
  }

  function onFile(event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || !input.dataset.into) {
      return;
    }
    var into = document.getElementById(input.dataset.into);
    var file = input.files && input.files[0];
    if (!into || !file) {
      return;
    }
    var reader = new FileReader();
    reader.onload = function () {
      into.value = String(reader.result);
    };
    reader.readAsText(file);
  }

  document.addEventListener("submit", onReveal);
  document.addEventListener("change", onFile);
})();
