// The filter form of GET /api/v1/logs, shared by the live tail, search, stats and exports: every filter the
// API takes, turned into query parameters (times converted to RFC 3339 UTC; severity repeatable).

import { checkbox, field, h, toLocalInput, toRfc3339 } from "./dom.js";

export const SEVERITIES = ["INFO", "WARNING", "ERROR", "CRITICAL"];
const TEXT_FILTERS = [
  ["q", "Full text"],
  ["action", "Action"],
  ["resource_type", "Resource type"],
  ["resource_id", "Resource id"],
  ["user_id", "User id"],
  ["session_id", "Session id"],
  ["request_id", "Request id"],
  ["ip_address", "IP address"],
];

/**
 * A filter form. options.times: show start/end; options.submit: button text; options.onsubmit(params).
 * Returns {form, params(), setTimes(start, end)}.
 */
export function filterForm({ times = true, submit = "Apply", onsubmit, extra = [] } = {}) {
  const inputs = {};
  const text = TEXT_FILTERS.map(([name, label]) => {
    const wrapper = field(label, { name, type: name === "q" ? "search" : "text", autocomplete: "off" });
    inputs[name] = wrapper.querySelector("input");
    return wrapper;
  });
  const timeFields = [];
  if (times) {
    for (const [name, label] of [["start_time", "From"], ["end_time", "To"]]) {
      const wrapper = field(label, { name, type: "datetime-local", step: 1 });
      inputs[name] = wrapper.querySelector("input");
      timeFields.push(wrapper);
    }
  }
  const severityBoxes = SEVERITIES.map((sev) => checkbox(sev, { name: "severity", value: sev }));
  const system = checkbox("Include service events", { name: "include_system", value: "true" });
  const button = h("button", { type: "submit" }, submit);
  const form = h("form", { class: "filters", "aria-label": "Filters" },
    timeFields, text,
    h("fieldset", {}, h("legend", {}, "Severity"), severityBoxes),
    system, extra, h("div", {}, button));

  function params() {
    const out = new URLSearchParams();
    for (const [name, input] of Object.entries(inputs)) {
      const value = input.type === "datetime-local" ? toRfc3339(input.value) : input.value.trim();
      if (value) out.append(name, value);
    }
    for (const box of form.querySelectorAll("input[name=severity]:checked")) out.append("severity", box.value);
    if (form.querySelector("input[name=include_system]").checked) out.append("include_system", "true");
    return out;
  }

  function setTimes(start, end) {
    if (inputs.start_time) inputs.start_time.value = start ? toLocalInput(start) : "";
    if (inputs.end_time) inputs.end_time.value = end ? toLocalInput(end) : "";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (onsubmit) onsubmit(params());
  });
  return { form, params, setTimes, inputs };
}

/** The filters as the JSON object POST /api/v1/exports takes (severity a list, include_system a boolean). */
export function filtersObject(params) {
  const out = {};
  for (const [key, value] of params.entries()) {
    if (key === "severity") (out.severity ||= []).push(value);
    else if (key === "include_system") out.include_system = value === "true";
    else out[key] = value;
  }
  return out;
}
