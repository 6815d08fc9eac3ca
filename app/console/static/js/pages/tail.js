// Live tail: WS /api/v1/logs/stream with the chosen filters. The token travels in the subprotocol pair
// ("bearer", token), as browsers cannot set headers on a socket. Pause closes the socket and keeps the last
// position seen; resume reconnects with ?after=<position>, so the server replays what was committed in
// between (no gap, no duplicate). A dropped socket reconnects the same way.

import * as api from "../api.js";
import { h, problemText } from "../dom.js";
import { eventRow, eventsTable } from "../events.js";
import { filterForm } from "../filters.js";

const MAX_ROWS = 500;

export function mount(main) {
  let socket = null;
  let position = null; // the last position seen: everything up to it is on screen
  let paused = false;
  let closedByUs = false;
  let retryTimer = null;
  let retries = 0;
  let params = new URLSearchParams();

  const status = h("p", { class: "status", role: "status", "aria-live": "polite", "data-testid": "tail-status" }, "Connecting…");
  const count = h("span", { class: "status", "data-testid": "tail-count" }, "0 events");
  const { el: tableEl, body } = eventsTable("Live events");
  const pause = h("button", { type: "button", "aria-pressed": "false", onclick: toggle }, "Pause");
  const clear = h("button", { type: "button", class: "secondary", onclick: () => { body.replaceChildren(); updateCount(); } }, "Clear");
  const filters = filterForm({ times: false, submit: "Apply filters", onsubmit: (p) => { params = p; position = null; body.replaceChildren(); updateCount(); connect(); } });

  function updateCount() {
    count.textContent = `${body.children.length} events${body.children.length >= MAX_ROWS ? ` (showing the newest ${MAX_ROWS})` : ""}`;
  }

  function setStatus(text) {
    status.textContent = text;
  }

  function close() {
    clearTimeout(retryTimer);
    if (socket) {
      closedByUs = true;
      socket.close(1000, "done");
      socket = null;
    }
  }

  async function connect() {
    close();
    closedByUs = false;
    let token;
    try {
      token = await api.accessToken();
    } catch (err) {
      setStatus(problemText(err));
      return;
    }
    const query = new URLSearchParams(params);
    if (position !== null) query.set("after", String(position));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/logs/stream?${query}`, ["bearer", token]);
    socket = ws;
    ws.onopen = () => {
      retries = 0;
      setStatus(position === null ? "Live: waiting for new events" : `Live: resumed after position ${position}`);
    };
    ws.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === "log") {
        if (paused) {
          // paused before any position was known: the first frame says where to resume, then stop listening
          if (position === null) position = frame.position - 1;
          close();
          return;
        }
        position = frame.position;
        body.prepend(eventRow(frame.data));
        while (body.children.length > MAX_ROWS) body.lastElementChild.remove();
        updateCount();
      } else if (frame.type === "ping") {
        if (position === null && !paused) position = frame.position;
      } else if (frame.type === "overflow") {
        position = frame.resume_after;
      } else if (frame.type === "error") {
        setStatus(`Refused: ${frame.detail}`);
        closedByUs = true;
      }
    };
    ws.onclose = (event) => {
      if (socket === ws) socket = null;
      if (closedByUs || paused) return;
      if (event.code === 1008 && retries > 0) {
        setStatus(`Closed by the server: ${event.reason || "not allowed"}`);
        return;
      }
      retries += 1;
      const wait = Math.min(10_000, 500 * 2 ** Math.min(retries, 5));
      setStatus(`Disconnected (${event.code}); reconnecting in ${Math.round(wait / 1000)} s…`);
      retryTimer = setTimeout(() => {
        (event.code === 1008 ? api.refresh() : Promise.resolve()).then(connect, (err) => setStatus(problemText(err)));
      }, wait);
    };
  }

  function toggle() {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (paused) {
      if (position !== null) close();
      setStatus(position !== null ? `Paused at position ${position}` : "Paused");
    } else if (socket) {
      setStatus("Live: waiting for new events"); // paused before any event came: the socket is still open
    } else {
      connect();
    }
  }

  main.append(
    h("h1", {}, "Live tail"),
    filters.form,
    h("div", { class: "row" }, pause, clear, count),
    status,
    tableEl);
  connect();
  return close;
}
