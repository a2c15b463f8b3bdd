import { ApiError, login } from "../api.js";
import { h, showStatus, statusLine } from "../dom.js";

export async function loginPage({ root, params }) {
  const status = statusLine();
  const name = h("input", { id: "login-name", name: "name", autocomplete: "username", required: true });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h(
    "form",
    { class: "card narrow", id: "login-form", novalidate: true },
    h("h1", {}, "Log in"),
    h("div", { class: "field" }, h("label", { for: "login-name" }, "Name"), name),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), password),
    submit,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    showStatus(status, "Logging in…");
    try {
      await login(name.value.trim(), password.value);
      password.value = "";
      const next = params.get("next");
      location.hash = next && next.startsWith("#/") && !next.startsWith("#/login") ? next : "#/sales";
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 429
          ? "Too many failed logins: wait a while and try again."
          : (error.text ?? String(error));
      showStatus(status, text, "error");
    } finally {
      submit.disabled = false;
    }
  });
  root.append(form);
  name.focus();
}
