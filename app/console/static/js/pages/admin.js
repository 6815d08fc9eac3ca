// Admin pages: users, API keys (the secret shown once), retention, alert rules and their deliveries.
// Write controls (marked data-write) are built only for an Admin; an Auditor sees the alert rules and
// deliveries read-only, and the other pages are not in its navigation (the API would answer 403 anyway).

import * as api from "../api.js";
import { checkbox, field, h, problemText, select, table, time, toast } from "../dom.js";
import { SEVERITIES } from "../filters.js";

function page(main, title, intro) {
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const body = h("div", {});
  main.append(h("h1", {}, title), intro ? h("p", { class: "muted" }, intro) : null, status, body);
  return { status, body };
}

function value(wrapper) {
  const el = wrapper.querySelector("input, select, textarea");
  return el.type === "checkbox" ? el.checked : el.value.trim();
}

function writeForm(legend, children, onsubmit) {
  const form = h("form", { class: "filters", "data-write": "", "aria-label": legend },
    h("h2", { class: "visually-hidden" }, legend), children, h("div", {}, h("button", { type: "submit" }, legend)));
  form.addEventListener("submit", (e) => { e.preventDefault(); onsubmit(form); });
  return form;
}

function secretBox(what, secret) {
  const box = h("div", { class: "secret", role: "alert", "data-testid": "secret" },
    h("p", {}, h("strong", {}, `${what}: copy it now, it is not shown again.`)),
    h("code", {}, secret), " ",
    h("button", { type: "button", class: "secondary", onclick: () => navigator.clipboard && navigator.clipboard.writeText(secret).then(() => toast("Copied")) }, "Copy"),
    " ",
    h("button", { type: "button", class: "secondary", onclick: () => box.remove() }, "I have saved it"));
  return box;
}

export const users = {
  mount(main) {
    const { status, body } = page(main, "Users", "The tenant's users (emails masked).");
    const list = h("div", {});
    const tid = api.current().claims.tid;
    async function load() {
      try {
        const rows = await api.api("/api/v1/users");
        list.replaceChildren(table("Users", [
          ["Username", (u) => u.username],
          ["Role", (u) => {
            const sel = select(`Role of ${u.username}`, "role", ["Admin", "User", "Auditor"], u.role);
            sel.classList.add("inline");
            sel.querySelector("select").addEventListener("change", (e) => act(`/api/v1/users/${u.id}`, "PATCH", { role: e.target.value }, `${u.username} is now ${e.target.value}`));
            sel.dataset.write = "";
            return sel;
          }],
          ["Email", (u) => u.email || ""],
          ["Created", (u) => time(u.created_at)],
          ["State", (u) => (u.disabled_at ? "disabled" : "active")],
          ["", (u) => h("div", { class: "row", "data-write": "" },
            h("button", { type: "button", class: "secondary", onclick: () => act(`/api/v1/users/${u.id}`, "PATCH", { disabled: !u.disabled_at }, `${u.username} ${u.disabled_at ? "enabled" : "disabled"}`) }, u.disabled_at ? "Enable" : "Disable"),
            h("button", { type: "button", class: "secondary", onclick: () => act(`/api/v1/users/${u.id}/unlock`, "POST", undefined, `${u.username} unlocked`) }, "Unlock"),
            h("button", { type: "button", class: "danger", onclick: () => confirm(`Delete user ${u.username}?`) && act(`/api/v1/users/${u.id}`, "DELETE", undefined, `${u.username} deleted`) }, "Delete"))],
        ], rows));
      } catch (err) {
        status.textContent = problemText(err);
      }
    }
    async function act(path, method, payload, done) {
      try {
        await api.api(path, { method, body: payload });
        toast(done);
        load();
      } catch (err) {
        toast(problemText(err), true);
      }
    }
    const fields = [
      field("Username", { name: "username", required: true, autocomplete: "off" }),
      field("Password", { name: "password", type: "password", required: true, autocomplete: "new-password" }),
      select("Role", "role", ["User", "Auditor", "Admin"], "User"),
      field("Email (optional)", { name: "email", type: "email", autocomplete: "off" }),
    ];
    const form = writeForm("Create user", fields, async (f) => {
      const [username, password, role, email] = fields.map(value);
      try {
        await api.api(`/api/v1/tenants/${tid}/users`, { method: "POST", body: { username, password, role, ...(email ? { email } : {}) } });
        toast(`User ${username} created`);
        f.reset();
        load();
      } catch (err) {
        status.textContent = problemText(err);
      }
    });
    body.append(form, list);
    load();
  },
};

export const keys = {
  mount(main) {
    const { status, body } = page(main, "API keys", "Keys for machine clients; a key's secret is shown once, when it is made.");
    const list = h("div", {});
    const shown = h("div", {});
    async function load() {
      try {
        const rows = await api.api("/api/v1/api-keys");
        list.replaceChildren(table("API keys", [
          ["Name", (k) => k.name], ["Role", (k) => k.role], ["Created", (k) => time(k.created_at)],
          ["Last used", (k) => time(k.last_used_at)], ["Revoked", (k) => time(k.revoked_at)],
          ["", (k) => (k.revoked_at ? "" : h("button", { type: "button", class: "danger", "data-write": "", onclick: () => revoke(k) }, "Revoke"))],
        ], rows));
      } catch (err) {
        status.textContent = problemText(err);
      }
    }
    async function revoke(k) {
      if (!confirm(`Revoke the key ${k.name}?`)) return;
      try {
        await api.api(`/api/v1/api-keys/${k.id}`, { method: "DELETE" });
        toast(`Key ${k.name} revoked`);
        load();
      } catch (err) {
        toast(problemText(err), true);
      }
    }
    const fields = [field("Name", { name: "name", required: true, autocomplete: "off" }), select("Role", "role", ["User", "Auditor"], "User")];
    const form = writeForm("Create key", fields, async (f) => {
      const [name, role] = fields.map(value);
      try {
        const made = await api.api("/api/v1/api-keys", { method: "POST", body: { name, role } });
        shown.replaceChildren(secretBox(`The key ${made.name}`, made.key));
        f.reset();
        load();
      } catch (err) {
        status.textContent = problemText(err);
      }
    });
    body.append(form, shown, list);
    load();
  },
};

export const retention = {
  mount(main) {
    const { status, body } = page(main, "Retention", "How long events stay in PostgreSQL; older ones are archived to the analytics lake, then removed.");
    const tid = api.current().claims.tid;
    const days = field("Days", { name: "days", type: "number", min: 1, max: 3650, required: true });
    const form = writeForm("Save retention", [days], async () => {
      try {
        const out = await api.api(`/api/v1/tenants/${tid}/retention`, { method: "PUT", body: { days: Number(value(days)) } });
        status.textContent = `Events are kept ${out.retention_days} days.`;
      } catch (err) {
        status.textContent = problemText(err);
      }
    });
    body.append(form);
    api.api("/api/v1/tenants").then((tenants) => {
      const mine = tenants.find((t) => t.id === tid);
      if (mine && mine.retention_days) {
        days.querySelector("input").value = mine.retention_days;
        status.textContent = `Events are kept ${mine.retention_days} days.`;
      } else {
        status.textContent = "No retention set: events stay until cleaned up.";
      }
    }, (err) => { status.textContent = problemText(err); });
  },
};

function matchText(m) {
  const parts = Object.entries(m || {}).filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("|") : v}`);
  return parts.join(", ") || "every event";
}

export const alerts = {
  mount(main) {
    const admin = api.isAdmin();
    const { status, body } = page(main, "Alerts", admin
      ? "Rules over the committed stream: when a rule matches enough events in its window, the service POSTs a signed webhook."
      : "Rules over the committed stream and their deliveries (read-only for your role).");
    const list = h("div", {});
    const shown = h("div", {});
    const deliveries = h("section", { "aria-live": "polite" });
    async function load() {
      try {
        const rows = await api.api("/api/v1/alerts");
        list.replaceChildren(table("Alert rules", [
          ["Name", (a) => a.name], ["Matches", (a) => matchText(a.match)],
          ["Threshold", (a) => `${a.threshold} in ${a.window_seconds} s (cooldown ${a.cooldown_seconds} s)`],
          ["Webhook", (a) => h("code", {}, a.webhook_url)], ["Enabled", (a) => (a.enabled ? "yes" : "no")],
          ["Last fired", (a) => time(a.last_fired_at)],
          ["", (a) => h("div", { class: "row" },
            h("button", { type: "button", class: "secondary", onclick: () => showDeliveries(a) }, "Deliveries"),
            admin ? h("button", { type: "button", class: "secondary", "data-write": "", onclick: () => act(`/api/v1/alerts/${a.id}`, "PATCH", { enabled: !a.enabled }) }, a.enabled ? "Disable" : "Enable") : null,
            admin ? h("button", { type: "button", class: "danger", "data-write": "", onclick: () => confirm(`Delete the rule ${a.name}?`) && act(`/api/v1/alerts/${a.id}`, "DELETE") }, "Delete") : null)],
        ], rows));
      } catch (err) {
        status.textContent = problemText(err);
      }
    }
    async function act(path, method, payload) {
      try {
        await api.api(path, { method, body: payload });
        load();
      } catch (err) {
        toast(problemText(err), true);
      }
    }
    async function showDeliveries(a) {
      try {
        const rows = await api.api(`/api/v1/alerts/${a.id}/deliveries`);
        deliveries.replaceChildren(h("h2", {}, `Deliveries of ${a.name}`), rows.length
          ? table("Deliveries", [
            ["When", (d) => time(d.created_at)], ["Attempt", (d) => d.attempt], ["Status", (d) => d.status],
            ["HTTP", (d) => d.http_status ?? ""], ["Took", (d) => (d.duration_ms === null ? "" : `${d.duration_ms} ms`)],
            ["Error", (d) => d.error || ""],
          ], rows)
          : h("p", { class: "muted" }, "No deliveries yet."));
      } catch (err) {
        toast(problemText(err), true);
      }
    }
    if (admin) {
      const fields = {
        name: field("Name", { name: "name", required: true, autocomplete: "off" }),
        webhook_url: field("Webhook URL", { name: "webhook_url", type: "url", required: true, autocomplete: "off" }),
        action: field("Action", { name: "action", autocomplete: "off" }),
        resource_type: field("Resource type", { name: "resource_type", autocomplete: "off" }),
        user_id: field("User id", { name: "user_id", autocomplete: "off" }),
        q: field("Text", { name: "q", autocomplete: "off" }),
        threshold: field("Threshold", { name: "threshold", type: "number", min: 1, value: "1" }),
        window_seconds: field("Window (s)", { name: "window_seconds", type: "number", min: 1, value: "60" }),
        cooldown_seconds: field("Cooldown (s)", { name: "cooldown_seconds", type: "number", min: 0, value: "300" }),
      };
      const severities = h("fieldset", {}, h("legend", {}, "Severity"), SEVERITIES.map((s) => checkbox(s, { name: "severity", value: s })));
      const form = writeForm("Create rule", [...Object.values(fields), severities], async (f) => {
        const match = {};
        for (const key of ["action", "resource_type", "user_id", "q"]) if (value(fields[key])) match[key] = value(fields[key]);
        const sev = [...severities.querySelectorAll("input:checked")].map((i) => i.value);
        if (sev.length) match.severity = sev;
        try {
          const made = await api.api("/api/v1/alerts", {
            method: "POST",
            body: {
              name: value(fields.name), webhook_url: value(fields.webhook_url), match,
              threshold: Number(value(fields.threshold)), window_seconds: Number(value(fields.window_seconds)),
              cooldown_seconds: Number(value(fields.cooldown_seconds)),
            },
          });
          shown.replaceChildren(secretBox(`The webhook secret of ${made.name}`, made.secret));
          f.reset();
          load();
        } catch (err) {
          status.textContent = problemText(err);
        }
      });
      body.append(form, shown);
    }
    body.append(list, deliveries);
    load();
  },
};
