// The sandbox server's page: lists the sandboxes through the API, extends and deletes them.
// The token is kept in this tab's sessionStorage only and sent as a bearer token.
"use strict";

const REFRESH_MS = 2000;
const EXTEND_SECONDS = 1800;
const tokenKey = "microshop-sandbox-token";
const message = document.getElementById("message");
const table = document.getElementById("sandboxes");
const rows = table.querySelector("tbody");

function token() {
  return sessionStorage.getItem(tokenKey) || "";
}

async function api(method, path, body) {
  const options = { method, headers: { Authorization: `Bearer ${token()}` } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch (error) {
      // not problem+json: keep the status text
    }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response.status === 204 ? null : response.json();
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) {
    td.append(content);
  } else {
    td.textContent = content;
  }
  return td;
}

function link(url) {
  if (!url) return "";
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.textContent = url;
  return anchor;
}

function servicesList(sandbox) {
  const list = document.createElement("ul");
  list.className = "services";
  for (const service of sandbox.services) {
    const item = document.createElement("li");
    item.textContent = `${service.name}: ${service.ready ? "ready" : service.detail}`;
    if (service.override) {
      const from = document.createElement("span");
      from.className = "override";
      from.textContent = ` (${service.override})`;
      item.append(from);
    }
    list.append(item);
  }
  return list;
}

function button(label, name, action) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.setAttribute("aria-label", `${label} ${name}`);
  element.addEventListener("click", async () => {
    element.disabled = true;
    try {
      await action();
      await refresh();
    } catch (error) {
      message.textContent = error.message;
    } finally {
      element.disabled = false;
    }
  });
  return element;
}

function render(answer) {
  // The table is redrawn every refresh: a keyboard user keeps the button they were on.
  const focused = document.activeElement && document.activeElement.getAttribute("aria-label");
  rows.replaceChildren();
  document.getElementById("count").textContent = answer.sandboxes.length;
  document.getElementById("quota").textContent = answer.quota;
  for (const sandbox of answer.sandboxes) {
    const row = rows.insertRow();
    row.dataset.name = sandbox.name;
    cell(row, sandbox.name);
    const status = cell(row, sandbox.status);
    status.className = `status-${sandbox.status}`;
    if (sandbox.problem) status.title = sandbox.problem;
    cell(row, sandbox.owner || "-");
    cell(row, link(sandbox.gateway_url));
    cell(row, servicesList(sandbox));
    cell(row, sandbox.time_left || "-").className = "time-left";
    const actions = cell(row, "");
    actions.className = "actions";
    const path = `/sandboxes/${encodeURIComponent(sandbox.name)}`;
    actions.append(
      button("Extend 30 min", sandbox.name, () =>
        api("POST", `${path}/extend`, { duration: EXTEND_SECONDS })),
      " ",
      button("Delete", sandbox.name, async () => {
        if (window.confirm(`Delete sandbox ${sandbox.name} and everything in it?`)) {
          await api("DELETE", path);
        }
      }),
    );
  }
  table.hidden = false;
  if (focused) {
    const again = rows.querySelector(`button[aria-label="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

async function refresh() {
  if (!token()) {
    message.textContent = "Enter the server's API token to see its sandboxes.";
    return;
  }
  try {
    render(await api("GET", "/sandboxes"));
    message.textContent = "";
  } catch (error) {
    message.textContent = error.message;
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(tokenKey, document.getElementById("token").value);
  refresh();
});

refresh();
setInterval(refresh, REFRESH_MS);
