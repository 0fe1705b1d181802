// The storefront's behaviour: place orders, list them a page at a time, show the services' health.
// It uses only the gateway's public API; failed calls answer with RFC 9457 problem+json, whose
// `detail` is what the user is shown.

const PAGE_SIZE = 10;
const ORDERS_REFRESH_MS = 3000;
const HEALTH_REFRESH_MS = 4000;
const READ_TIMEOUT_MS = 5000;
const PLACE_TIMEOUT_MS = 15000; // the gateway itself gives up on order-service well before this

const byId = (id) => document.getElementById(id);
const money = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});

/** A failed call: `message` is for people; `status` is missing when no answer arrived. */
class ApiError extends Error {
  constructor(message, { status, problem } = {}) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

async function call(url, options = {}, timeoutMs = READ_TIMEOUT_MS) {
  let response;
  try {
    response = await fetch(url, {
      ...options,
      headers: { Accept: "application/json", ...options.headers },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const why = error.name === "TimeoutError" ? `no answer within ${timeoutMs / 1000} s` : "no answer";
    throw new ApiError(`The shop could not be reached (${why}).`);
  }
  if (response.ok) return response;
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    // Not problem+json (a proxy's error page, say): the status line will have to do.
  }
  const message = problem?.detail || problem?.title || `The shop answered ${response.status}.`;
  throw new ApiError(message, { status: response.status, problem });
}

/** Sets a message only when it changes, so screen readers announce news, not every refresh. */
function say(element, text, tone = "") {
  if (element.textContent !== text) element.textContent = text;
  if (element.dataset.tone !== tone) element.dataset.tone = tone;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = "badge";
  span.dataset.kind = kind;
  span.textContent = text;
  return span;
}

// Placing an order ---------------------------------------------------------------------------

const form = byId("order-form");
const placeButton = byId("place-button");
const orderResult = byId("order-result");
let placing = false;
// An attempt whose outcome never arrived: sent again, it keeps its key, so it is placed once.
let unconfirmed = null;

function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function placedMessage(order) {
  const what = `Order #${order.id} placed: ${order.item} for ${order.customer}`;
  if (order.status === "paid") return `${what}, paid.`;
  if (order.status === "declined") return `${what}; the payment was declined.`;
  return `${what}; the payment is pending, and its status in the list will update by itself.`;
}

function markInvalid(problem) {
  const fields = (problem?.errors ?? []).map((error) => error.field);
  let first = null;
  for (const input of form.querySelectorAll("input")) {
    const invalid = fields.includes(input.name);
    input.setAttribute("aria-invalid", String(invalid));
    if (invalid) first ??= input;
  }
  first?.focus();
}

form.addEventListener("input", (event) => event.target.removeAttribute("aria-invalid"));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (placing) return;
  const body = new URLSearchParams(new FormData(form)).toString();
  const key = unconfirmed?.body === body ? unconfirmed.key : newIdempotencyKey();
  placing = true;
  placeButton.setAttribute("aria-disabled", "true");
  form.setAttribute("aria-busy", "true");
  say(orderResult, "Placing the order…", "busy");
  try {
    const response = await call(
      "orders",
      {
        method: "POST",
        body,
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          "Idempotency-Key": key,
        },
      },
      PLACE_TIMEOUT_MS,
    );
    unconfirmed = null;
    const { order } = await response.json();
    markInvalid(null);
    say(orderResult, placedMessage(order), order.status);
    byId("item").value = "";
    byId("price").value = "";
    await showOrder(order.id);
  } catch (error) {
    if (error.status === undefined || error.status >= 500) {
      unconfirmed = { body, key };
      say(
        orderResult,
        `The order could not be confirmed: ${error.message} Sending it again is safe; ` +
          "it will not be placed twice.",
        "error",
      );
    } else {
      unconfirmed = null;
      markInvalid(error.problem);
      say(orderResult, `The order was not placed: ${error.message}`, "error");
    }
  } finally {
    placing = false;
    placeButton.removeAttribute("aria-disabled");
    form.removeAttribute("aria-busy");
  }
});

// Listing orders, a page at a time by the gateway's Link header -------------------------------

const ordersBody = byId("orders-body");
const ordersMessage = byId("orders-message");
const ordersRange = byId("orders-range");
const previousButton = byId("previous-page");
const nextButton = byId("next-page");
const pages = { query: `?limit=${PAGE_SIZE}`, earlier: [], next: null };
let ordersLoad = 0;
let rendered = "";
let justPlaced = null;

function nextQuery(link) {
  const match = link && /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
  return match ? new URL(match[1], location.href).search : null;
}

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function orderRow(order) {
  const row = document.createElement("tr");
  row.dataset.orderId = order.id;
  row.dataset.status = order.status;
  if (order.id === justPlaced) row.classList.add("fresh");
  const status = document.createElement("td");
  status.append(badge(order.status, order.status));
  // On a narrow screen the customer column is hidden and the name shown under the item instead.
  const item = cell(order.item, "item");
  const customer = document.createElement("span");
  customer.className = "customer-inline";
  customer.textContent = order.customer;
  item.append(customer);
  row.append(
    cell(`#${order.id}`),
    item,
    cell(money.format(order.price), "number"),
    cell(order.customer, "customer"),
    status,
  );
  return row;
}

function renderOrders(orders) {
  const snapshot = JSON.stringify([orders, justPlaced]);
  if (snapshot !== rendered) {
    rendered = snapshot;
    if (orders.length === 0) {
      const empty = cell(pages.earlier.length ? "No orders on this page." : "No orders yet.");
      empty.colSpan = 5;
      empty.className = "empty";
      const row = document.createElement("tr");
      row.append(empty);
      ordersBody.replaceChildren(row);
    } else {
      ordersBody.replaceChildren(...orders.map(orderRow));
    }
  }
  const range = orders.length
    ? `Orders #${orders[0].id} to #${orders[orders.length - 1].id}`
    : "";
  say(ordersRange, range);
  previousButton.setAttribute("aria-disabled", String(pages.earlier.length === 0));
  nextButton.setAttribute("aria-disabled", String(pages.next === null));
}

async function loadOrders() {
  const load = ++ordersLoad;
  try {
    const response = await call(`orders${pages.query}`);
    const orders = await response.json();
    if (load !== ordersLoad) return null; // the user moved on while this page was on its way
    pages.next = nextQuery(response.headers.get("Link"));
    renderOrders(orders);
    say(ordersMessage, "");
    return orders;
  } catch (error) {
    if (load === ordersLoad) say(ordersMessage, `The orders could not be loaded: ${error.message}`, "error");
    return null;
  }
}

/** Shows a new order: on the page in view if it is there, else on a page that starts with it. */
async function showOrder(id) {
  justPlaced = id;
  const orders = await loadOrders();
  if (orders && !orders.some((order) => order.id === id)) {
    pages.earlier.push(pages.query);
    pages.query = `?limit=${PAGE_SIZE}&after=${id - 1}`;
    await loadOrders();
  }
}

nextButton.addEventListener("click", () => {
  if (pages.next === null) return;
  pages.earlier.push(pages.query);
  pages.query = pages.next;
  loadOrders();
});

previousButton.addEventListener("click", () => {
  if (pages.earlier.length === 0) return;
  pages.query = pages.earlier.pop();
  loadOrders();
});

// The services' health ------------------------------------------------------------------------

const healthList = byId("health-list");
const healthSummary = byId("health-summary");
const healthChecked = byId("health-checked");

function latency(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** The faults switched on in a service, in words, as `microshop chaos show` prints them. */
function faultsText(faults) {
  const parts = [];
  if (faults.latency_seconds)
    parts.push(`${faults.latency_seconds} s ${faults.latency_distribution} latency`);
  if (faults.error_rate)
    parts.push(`${Math.round(faults.error_rate * 100)}% answered ${faults.error_status}`);
  if (faults.storage_latency_seconds)
    parts.push(`${faults.storage_latency_seconds} s slower storage`);
  return `Faults on: ${parts.join(", ")}.`;
}

function serviceItem(service) {
  const item = document.createElement("li");
  item.dataset.service = service.service;
  item.dataset.state = service.state;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = service.service;
  const detail = document.createElement("span");
  detail.className = "detail";
  const identity = service.health_endpoint
    ? `version ${service.version}`
    : "answers, has no health endpoint";
  detail.textContent =
    service.state === "up"
      ? `${identity}, ${latency(service.latency_ms)}`
      : `After ${latency(service.latency_ms)}: ${service.error}`;
  item.append(name, badge(service.state, service.state), detail);
  if (service.faults) {
    const faults = document.createElement("span");
    faults.className = "faults";
    faults.textContent = faultsText(service.faults);
    item.append(faults);
  }
  return item;
}

async function loadHealth() {
  try {
    const { services } = await (await call("status")).json();
    healthList.replaceChildren(...services.map(serviceItem));
    const down = services.filter((service) => service.state !== "up").map((s) => s.service);
    const faulty = services.filter((service) => service.faults).map((s) => s.service);
    const faultNote = faulty.length ? ` Faults on: ${faulty.join(", ")}.` : "";
    if (down.length === 0)
      say(healthSummary, `All ${services.length} services are up.${faultNote}`, "up");
    else say(healthSummary, `Down: ${down.join(", ")}.${faultNote}`, "down");
    healthChecked.textContent = `Checked at ${new Date().toLocaleTimeString()}.`;
  } catch (error) {
    say(healthSummary, `The gateway did not report: ${error.message}`, "down");
  }
}

// Refreshing by itself, while the page is in view ---------------------------------------------

function every(ms, task) {
  const run = async () => {
    if (!document.hidden) await task();
    setTimeout(run, ms);
  };
  run();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    loadOrders();
    loadHealth();
  }
});

every(ORDERS_REFRESH_MS, loadOrders);
every(HEALTH_REFRESH_MS, loadHealth);
