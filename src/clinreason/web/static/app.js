/* clinreason review screen: keyboard shortcuts, time on task, draft flush on leaving. No eval, no inline code. */
(function () {
  "use strict";

  function typing(el) {
    if (!el) return false;
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable) return true;
    return el.tagName === "INPUT" && !["radio", "checkbox", "button", "submit", "hidden"].includes(el.type);
  }

  function onIdlePage() {
    var next = document.getElementById("next-item");
    if (!next) return;
    document.addEventListener("keydown", function (e) {
      if (e.key === "n" && !typing(document.activeElement) && !e.ctrlKey && !e.metaKey && !e.altKey) {
        e.preventDefault();
        next.click();
      }
    });
  }

  function onReviewPage(form) {
    var dims = Array.prototype.slice.call(form.querySelectorAll("fieldset.dim"));
    var editor = document.getElementById("editor");
    var editorText = document.getElementById("edited-text");
    var editing = document.getElementById("editing");
    var confirmBar = document.getElementById("confirm");
    var confirmVerdict = document.getElementById("confirm-verdict");
    var help = document.getElementById("help");
    var clientError = document.getElementById("client-error");
    var secondsField = document.getElementById("seconds");
    var timer = document.getElementById("timer");
    var layout = document.getElementById("review");
    var active = 0;
    var pending = null;
    var submitting = false;
    var seconds = parseFloat(secondsField.value) || 0;

    function setActive(i) {
      if (!dims.length) return;
      active = Math.max(0, Math.min(dims.length - 1, i));
      dims.forEach(function (d, k) { d.classList.toggle("active", k === active); });
      dims[active].scrollIntoView({ block: "nearest" });
    }

    function scored(d) { return !!d.querySelector("input[type=radio]:checked"); }

    function score(value) {
      var radio = dims[active] && dims[active].querySelector('input[type=radio][value="' + value + '"]');
      if (!radio) return;
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
      clientError.hidden = true;
      if (active < dims.length - 1) setActive(active + 1);
    }

    function showError(message) {
      clientError.textContent = message;
      clientError.hidden = false;
    }

    function missing() {
      for (var i = 0; i < dims.length; i++) if (!scored(dims[i])) return i;
      return -1;
    }

    function openEditor() {
      editor.hidden = false;
      editing.value = "1";
      layout.classList.add("editing");
      editor.scrollIntoView({ block: "start" });
      editorText.focus();
    }

    function ask(verdict) {
      pending = verdict;
      confirmVerdict.textContent = verdict.replace("_", " ");
      confirmBar.hidden = false;
    }

    function cancel() {
      pending = null;
      confirmBar.hidden = true;
    }

    function submit(verdict) {
      var gap = missing();
      if (gap >= 0) {
        cancel();
        setActive(gap);
        showError("Score every dimension first: " + dims[gap].dataset.dim + " has no score.");
        return;
      }
      var button = document.getElementById("verdict-" + verdict);
      if (!button) return;
      submitting = true;
      form.requestSubmit(button);
    }

    form.addEventListener("submit", function (e) {
      var gap = missing();
      if (gap >= 0) {
        e.preventDefault();
        submitting = false;
        setActive(gap);
        showError("Score every dimension first: " + dims[gap].dataset.dim + " has no score.");
        return;
      }
      submitting = true;
    });

    dims.forEach(function (d, k) {
      d.addEventListener("focusin", function () { setActive(k); });
      d.addEventListener("click", function () { setActive(k); });
    });
    document.getElementById("open-editor").addEventListener("click", openEditor);

    document.addEventListener("keydown", function (e) {
      var el = document.activeElement;
      if (e.key === "Escape") {
        if (!help.hidden) { help.hidden = true; return; }
        if (pending) { cancel(); return; }
        if (typing(el)) { el.blur(); return; }
        return;
      }
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && el === editorText) {
        e.preventDefault();
        submit("edit");
        return;
      }
      if (typing(el) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "Enter" && pending) { e.preventDefault(); submit(pending); return; }
      if (/^[0-9]$/.test(e.key)) { e.preventDefault(); score(e.key); return; }
      switch (e.key) {
        case "j": e.preventDefault(); setActive(active + 1); break;
        case "k": e.preventDefault(); setActive(active - 1); break;
        case "a": e.preventDefault(); ask("accept"); break;
        case "r": e.preventDefault(); ask("regenerate"); break;
        case "f": e.preventDefault(); ask("flag_question"); break;
        case "e": e.preventDefault(); cancel(); openEditor(); break;
        case "d": e.preventDefault(); var det = dims[active].querySelector("details"); det.open = !det.open; break;
        case "c": e.preventDefault(); dims[active].querySelector("textarea").focus(); break;
        case "?": e.preventDefault(); help.hidden = !help.hidden; break;
        default: break;
      }
    });

    // Time on task: counted only while the tab is visible; saved with the draft.
    setInterval(function () {
      if (document.visibilityState !== "visible") return;
      seconds += 1;
      secondsField.value = String(seconds);
      timer.textContent = String(seconds);
    }, 1000);

    // Leaving the tab: flush the draft now instead of waiting for the autosave delay.
    function flush() {
      if (submitting || !navigator.sendBeacon) return;
      navigator.sendBeacon(form.getAttribute("hx-post"), new FormData(form));
    }
    document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") flush(); });
    window.addEventListener("pagehide", flush);

    if (!editor.hidden) layout.classList.add("editing");
    setActive(Math.max(0, missing()));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("review-form");
    if (form) onReviewPage(form); else onIdlePage();
  });
})();
