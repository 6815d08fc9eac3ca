// Sign-in: tenant, username, password → POST /api/v1/auth/token.

import * as api from "../api.js";
import { field, h, problemText } from "../dom.js";

export function mount(main, done) {
  const error = h("p", { class: "error", role: "alert" });
  const tenant = field("Tenant", { name: "tenant", required: true, autocomplete: "organization" });
  const username = field("Username", { name: "username", required: true, autocomplete: "username" });
  const password = field("Password", { name: "password", type: "password", required: true, autocomplete: "current-password" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"), tenant, username, password, button, error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    button.disabled = true;
    const value = (w) => w.querySelector("input").value;
    try {
      await api.signIn(value(tenant).trim(), value(username).trim(), value(password));
      if (!location.hash || location.hash === "#/") location.hash = "#/tail";
      done();
    } catch (err) {
      error.textContent = err.status === 401 ? "Wrong tenant, username or password." : problemText(err);
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  tenant.querySelector("input").focus();
}
