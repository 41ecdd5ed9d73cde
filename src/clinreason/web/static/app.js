/* clinreason review screen: keyboard shortcuts, step marking, time on task, draft flush on leaving.
   No eval, no inline code. Two modes: scoring (digits score the highlighted dimension) and step mode
   (`s`; digits pick a marked step's error category, then its severity). The mode is always on screen. */
(function () {
  "use strict";

  // What this script says itself comes from the page, in the reader's language: JSON in the review screen's
  // `data-messages` (the CSP allows no inline script); English where the page has none. {name} marks a value
  // filled in here.
  var MESSAGES = {
    stepOf: "{step} of {total}",
    notAnError: "Step {step} is not marked as an error: press x first.",
    digitsInStepMode: "In step mode the number keys pick an error's category and severity: press x to mark " +
                      "step {step} as an error, or Esc to go back to scoring.",
    scoreFirst: "Score every dimension first: {dim} has no score."
  };

  function loadMessages() {
    var holder = document.getElementById("review");
    if (!holder || !holder.dataset.messages) return;
    try {
      var given = JSON.parse(holder.dataset.messages);
      Object.keys(given).forEach(function (key) { if (typeof given[key] === "string") MESSAGES[key] = given[key]; });
    } catch (err) { /* keep English */ }
  }

  function say(key, values) {
    return MESSAGES[key].replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values || {}, name) ? String(values[name]) : whole;
    });
  }

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
    var stepList = document.getElementById("rationale");
    var steps = stepList && stepList.tagName === "OL" ? Array.prototype.slice.call(stepList.querySelectorAll("li.step")) : [];
    var modeLine = document.getElementById("mode");
    var stepMode = false;
    var activeStep = 0;
    var phase = null; // null | "category" | "severity": what the number keys pick for the active step

    function showMode() {
      var name = !stepMode ? "scoring" : (phase || "step");
      document.body.classList.toggle("step-mode", stepMode);
      if (modeLine) {
        Array.prototype.forEach.call(modeLine.querySelectorAll("[data-mode]"), function (span) {
          span.hidden = span.dataset.mode !== name;
        });
        Array.prototype.forEach.call(modeLine.querySelectorAll(".mode-step"), function (el) {
          el.textContent = steps.length ? say("stepOf", { step: activeStep + 1, total: steps.length }) : "";
        });
      }
      steps.forEach(function (li, k) {
        var here = stepMode && k === activeStep;
        li.classList.toggle("active", here);
        li.classList.toggle("picking", here && phase === "category");
        li.classList.toggle("rating", here && phase === "severity");
      });
    }

    function verdictOf(li) {
      var radio = li.querySelector("input.step-verdict:checked");
      return radio ? radio.value : "";
    }

    // Only an error takes a category, severity, note and correction: the other steps do not send them.
    function syncStep(li) {
      var verdict = verdictOf(li);
      li.classList.toggle("marked-ok", verdict === "ok");
      li.classList.toggle("marked-error", verdict === "error");
      Array.prototype.forEach.call(li.querySelectorAll(".step-error input, .step-error textarea"), function (el) {
        el.disabled = verdict !== "error";
      });
    }

    function changed(input) { input.dispatchEvent(new Event("change", { bubbles: true })); }

    function enterSteps(i, focus) {
      if (!steps.length) return;
      activeStep = Math.max(0, Math.min(steps.length - 1, i));
      stepMode = true;
      phase = null;
      showMode();
      if (focus !== false) steps[activeStep].focus({ preventScroll: true });
      steps[activeStep].scrollIntoView({ block: "nearest" });
    }

    function leaveSteps() {
      var el = document.activeElement;
      if (el && stepList && stepList.contains(el)) el.blur();
      stepMode = false;
      phase = null;
      showMode();
    }

    function markStep(verdict) {
      var li = steps[activeStep];
      var radio = li.querySelector('input.step-verdict[value="' + verdict + '"]');
      if (!radio) return;
      radio.checked = true;
      syncStep(li);
      changed(radio);
      clientError.hidden = true;
    }

    function pick(kind, n) {
      var radio = steps[activeStep].querySelectorAll("input.step-" + kind)[n - 1];
      if (!radio) return false;
      radio.checked = true;
      changed(radio);
      return true;
    }

    function stepField(kind) {
      var li = steps[activeStep];
      if (verdictOf(li) !== "error") {
        showError(say("notAnError", { step: activeStep + 1 }));
        return;
      }
      li.querySelector("textarea.step-" + kind).focus();
    }

    // A key in step mode: true when it was the step's.
    function stepKey(e) {
      var key = e.key;
      if (/^[0-9]$/.test(key)) {
        e.preventDefault();
        var n = parseInt(key, 10);
        if (phase === "category") {
          if (pick("category", n)) { phase = "severity"; showMode(); }
        } else if (phase === "severity") {
          if (pick("severity", n)) { phase = null; showMode(); stepField("note"); }
        } else {
          showError(say("digitsInStepMode", { step: activeStep + 1 }));
        }
        return true;
      }
      switch (key) {
        case "]": case "ArrowDown": e.preventDefault(); enterSteps(activeStep + 1); return true;
        case "[": case "ArrowUp": e.preventDefault(); enterSteps(activeStep - 1); return true;
        case "o": e.preventDefault(); markStep("ok"); phase = null; showMode(); return true;
        case "x": e.preventDefault(); markStep("error"); phase = "category"; showMode(); return true;
        case "u": e.preventDefault(); markStep(""); phase = null; showMode(); return true;
        case "n": e.preventDefault(); stepField("note"); return true;
        case "w": e.preventDefault(); stepField("correction"); return true;
        case "j": case "k": case "c": case "d": leaveSteps(); return false; // scoring keys: back to scoring
        default: return false;
      }
    }

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
      var button = document.getElementById("verdict-" + verdict);
      confirmVerdict.textContent = (button && button.dataset.label) || verdict.replace("_", " ");
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
        showError(say("scoreFirst", { dim: dims[gap].dataset.title || dims[gap].dataset.dim }));
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
        showError(say("scoreFirst", { dim: dims[gap].dataset.title || dims[gap].dataset.dim }));
        return;
      }
      submitting = true;
    });

    dims.forEach(function (d, k) {
      d.addEventListener("focusin", function () { if (stepMode) leaveSteps(); setActive(k); });
      d.addEventListener("click", function () { if (stepMode) leaveSteps(); setActive(k); });
    });
    steps.forEach(function (li, k) {
      syncStep(li);
      li.addEventListener("focusin", function () {
        if (!stepMode || activeStep !== k) { activeStep = k; phase = null; }
        stepMode = true;
        showMode();
      });
      li.addEventListener("change", function (e) {
        var t = e.target;
        if (t.classList.contains("step-verdict")) syncStep(li);
        if (li.classList.contains("invalid")) { // a refused mark being fixed: the old message no longer applies
          li.classList.remove("invalid");
          var problem = li.querySelector(".step-problem");
          if (problem) problem.hidden = true;
        }
        if (t.classList.contains("step-category") && phase === "category") { phase = null; showMode(); }
      });
      var again = li.querySelector(".cats-change");
      if (again) again.addEventListener("click", function () { activeStep = k; stepMode = true; phase = "category"; showMode(); });
    });
    document.getElementById("open-editor").addEventListener("click", openEditor);

    document.addEventListener("keydown", function (e) {
      var el = document.activeElement;
      if (e.key === "Escape") {
        if (!help.hidden) { help.hidden = true; return; }
        if (pending) { cancel(); return; }
        if (typing(el)) {
          var inStep = el.closest && el.closest("li.step");
          if (inStep) inStep.focus({ preventScroll: true }); else el.blur();
          return;
        }
        if (stepMode && phase) { phase = null; showMode(); return; }
        if (stepMode) { leaveSteps(); return; }
        return;
      }
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && el === editorText) {
        e.preventDefault();
        submit("edit");
        return;
      }
      if (typing(el) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "Enter" && pending) { e.preventDefault(); submit(pending); return; }
      if (stepMode && stepKey(e)) return;
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
        case "s": if (steps.length) { e.preventDefault(); cancel(); enterSteps(activeStep); } break;
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
    showMode();
    var invalid = stepList && stepList.querySelector("li.step.invalid");
    if (invalid) enterSteps(steps.indexOf(invalid)); // a refused mark: straight back to that step
  }

  document.addEventListener("DOMContentLoaded", function () {
    loadMessages();
    var form = document.getElementById("review-form");
    if (form) onReviewPage(form); else onIdlePage();
  });
})();
