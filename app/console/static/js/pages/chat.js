// Analyst chat: POST /api/v1/chat with the conversation id, showing each answer with the SQL it ran and the
// rows as a table (or why nothing was run).

import * as api from "../api.js";
import { field, h, problemText } from "../dom.js";

const STORE = "auditlog.console.conversation";

function answerView(a) {
  return h("article", { class: "bubble", "data-testid": "answer" },
    h("p", {}, a.answer),
    a.refused ? h("p", { class: "error" }, `Not run: ${a.refused}`) : null,
    a.sql ? h("details", { open: true }, h("summary", {}, "SQL it ran"), h("pre", { "data-testid": "sql" }, h("code", {}, a.sql))) : null,
    a.columns && a.columns.length
      ? h("div", { class: "scroll" }, h("table", { "aria-label": "Result rows", "data-testid": "rows" },
        h("thead", {}, h("tr", {}, a.columns.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, a.rows.map((row) => h("tr", {}, row.map((v) => h("td", {}, v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v))))))))
      : null,
    h("p", { class: "status" }, `${a.row_count} rows${a.truncated ? " (truncated)" : ""}`));
}

export function mount(main) {
  let conversation = sessionStorage.getItem(STORE);
  const log = h("div", { class: "chat-log", "aria-live": "polite" });
  const question = field("Question", { name: "question", rows: 2, required: true, placeholder: "e.g. Show all ERROR logs between 2025-07-01 and 2025-07-24" }, "textarea");
  const ask = h("button", { type: "submit" }, "Ask");
  const restart = h("button", { type: "button", class: "secondary", onclick: () => { conversation = null; sessionStorage.removeItem(STORE); log.replaceChildren(); } }, "New conversation");
  const form = h("form", {}, question, h("div", { class: "row" }, ask, restart));
  const input = question.querySelector("textarea");
  input.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    log.append(h("p", { class: "bubble user" }, text));
    ask.disabled = true;
    const waiting = h("p", { class: "status" }, "Thinking…");
    log.append(waiting);
    try {
      const body = { question: text };
      if (conversation) body.conversation_id = conversation;
      const answer = await api.api("/api/v1/chat", { method: "POST", body });
      conversation = answer.conversation_id;
      sessionStorage.setItem(STORE, conversation);
      waiting.replaceWith(answerView(answer));
      input.value = "";
    } catch (err) {
      waiting.replaceWith(h("p", { class: "error", role: "alert" }, problemText(err)));
    } finally {
      ask.disabled = false;
      input.focus();
    }
  });
  main.append(h("h1", {}, "Analyst chat"),
    h("p", { class: "muted" }, "Ask about your tenant's events; every answer shows the SQL it ran over them."), log, form);
  if (conversation) {
    api.api(`/api/v1/chat/${conversation}`).then((c) => {
      for (const m of c.messages) {
        log.append(m.role === "user"
          ? h("p", { class: "bubble user" }, m.content)
          : h("article", { class: "bubble" }, h("p", {}, m.content), m.sql ? h("pre", {}, h("code", {}, m.sql)) : null));
      }
    }, () => { conversation = null; sessionStorage.removeItem(STORE); });
  }
}
