// The connect page's behaviour: show the fields of the chosen option, check required fields, post the form as the
// source's config, and say what happened. Secrets typed here go to this service only, and are never shown back.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("connect-form");
  if (!form) return;

  const toggle = (fieldset, on) => {
    fieldset.disabled = !on;
    fieldset.hidden = !on;
  };
  form.querySelectorAll("select[data-select]").forEach((select) => {
    const update = () => form.querySelectorAll(`fieldset[data-option-of="${select.dataset.select}"]`)
      .forEach((f) => toggle(f, f.dataset.option === select.value));
    select.addEventListener("change", update);
    update();
  });
  form.querySelectorAll("input[data-switch]").forEach((box) => {
    const update = () => form.querySelectorAll(`fieldset[data-switch-of="${box.dataset.switch}"]`).forEach((f) => toggle(f, box.checked));
    box.addEventListener("change", update);
    update();
  });

  const formError = document.getElementById("form-error");
  const clearErrors = () => {
    formError.hidden = true;
    formError.textContent = "";
    form.querySelectorAll(".field-error").forEach((p) => { p.hidden = true; p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  };
  const showFieldError = (input, message) => {
    const slot = document.getElementById(`${input.id}-error`);
    input.setAttribute("aria-invalid", "true");
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
      input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), slot.id].filter(Boolean).join(" "));
    }
  };

  // The config as the source type expects it: dotted names become nested objects.
  const payloadOf = () => {
    const payload = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      let value;
      if (el.type === "checkbox") value = el.checked;
      else if (el.type === "number") { if (el.value === "") continue; value = Number(el.value); }
      else { if (el.value === "") continue; value = el.value; }
      const path = el.name.split(".");
      let target = payload;
      for (const key of path.slice(0, -1)) target = target[key] ??= {};
      target[path[path.length - 1]] = value;
    }
    return payload;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const missing = [...form.elements].filter((el) => el.required && !el.disabled && el.value.trim() === "");
    if (missing.length > 0) {
      missing.forEach((el) => showFieldError(el, "This field is required."));
      formError.textContent = "Fill in the required fields.";
      formError.hidden = false;
      missing[0].focus();
      return;
    }

    const button = document.getElementById("submit");
    button.disabled = true;
    try {
      const response = await fetch(`${window.location.pathname.replace(/\/$/, "")}/credentials`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ payload: payloadOf() }),
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 201) {
        form.reset();
        form.hidden = true;
        document.getElementById("credential-id").textContent = body.credential_id;
        const success = document.getElementById("success");
        success.hidden = false;
        success.focus?.();
        return;
      }

      const message = body.detail || "The credentials could not be saved. Try again.";
      const attr = typeof body.attr === "string" ? body.attr.replace(/^payload\./, "") : null;
      const field = attr ? form.querySelector(`[name="${CSS.escape(attr)}"]`) : null;
      if (field) showFieldError(field, message);
      formError.textContent = message;
      formError.hidden = false;
      (field || formError).focus?.();
    } catch {
      formError.textContent = "The service could not be reached. Try again.";
      formError.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
});
