// What the chat and the console share: calling the API, building DOM nodes, rendering a
// reply's text with its citations, and formatting figures. Message text only ever reaches
// the page as text nodes: nothing here assigns markup from a string.

/** An API call that failed: its HTTP status (0 when the server was not reached), the
 *  server's stable error code and a message fit to show. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }

  /** Whether the server refused the caller's credentials. */
  get isAuth() {
    return refusesCredentials(this.status, this.code);
  }
}

/** A 401, or a 403 about the key's role. A 403 `conversation_forbidden` is about a
 *  conversation's token, not the key: the key itself was accepted. */
function refusesCredentials(status, code) {
  return status === 401 || (status === 403 && code !== "conversation_forbidden");
}

/** What a refused credential means, by the server's error code, else by status. */
const AUTH_MESSAGES = {
  unauthenticated: "The server asked for an API key (401 Unauthorized).",
  invalid_credentials: "The server does not accept this API key (401 Unauthorized).",
  forbidden: "This API key's role may not do this (403 Forbidden).",
  401: "The server did not accept this credential (401 Unauthorized).",
  403: "The server refused this API key (403 Forbidden).",
};

/** A server's message as a sentence: capitalised, with its full stop. */
function sentence(text) {
  const t = String(text || "").trim();
  if (!t) return "";
  const capitalised = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(capitalised) ? capitalised : `${capitalised}.`;
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = "";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = sentence(body.error.message);
    }
  } catch {
    // Not JSON (a proxy's page, an empty body): the status says enough.
  }
  if (refusesCredentials(response.status, code)) {
    const meaning = AUTH_MESSAGES[code] || AUTH_MESSAGES[response.status];
    message = meaning + (message ? ` ${message}` : "");
  }
  if (!message) {
    message = `The server answered ${response.status} ${response.statusText || ""}`.trim() + ".";
  }
  return new ApiError(response.status, code, message);
}

/**
 * A function that calls the API: `call(path, {method, body, accept, raw})`. It sends the key
 * `getKey()` returns, when there is one, as a bearer token, and the headers `getHeaders()`
 * returns (those without a value are left out). It resolves to the parsed JSON body (or the
 * Response itself with `raw: true`) and rejects with an ApiError otherwise.
 */
export function apiClient(getKey, getHeaders = () => ({})) {
  return async function call(path, { method = "GET", body, accept = "application/json", raw = false, signal } = {}) {
    const headers = {};
    for (const [name, value] of Object.entries(getHeaders() || {})) {
      if (value !== null && value !== undefined && value !== "") headers[name.toLowerCase()] = String(value);
    }
    headers.accept = accept;
    const key = getKey();
    if (key) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      throw new ApiError(0, "network", "Could not reach the server. Check the connection and try again.");
    }
    if (!response.ok) throw await errorFrom(response);
    if (raw) return response;
    if (response.status === 204) return null;
    try {
      return await response.json();
    } catch {
      throw new ApiError(response.status, "bad_response", "The server sent an answer this page cannot read.");
    }
  };
}

/** An element: `el("p", {class: "x", "aria-label": "y", onclick: f}, "text", child)`.
 *  Children that are strings become text nodes; null and false are skipped. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element with its attributes. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child) node.append(child);
  }
  return node;
}

const ICON_PATHS = {
  thumb: "M7 11v9H4a1 1 0 0 1-1-1v-7a1 1 0 0 1 1-1h3Zm0 0 3.6-7.2A1.5 1.5 0 0 1 13.5 4.5V9h5.1a2 2 0 0 1 2 2.4l-1.4 7A2 2 0 0 1 17.2 20H7",
  send: "M4 12 20 4l-4 16-4-7-8-1Zm8 1 8-9",
  person: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8Zm-7 8a7 7 0 0 1 14 0",
  plus: "M12 5v14M5 12h14",
  refresh: "M20 11a8 8 0 1 0-2.3 5.7M20 5v6h-6",
  ticket: "M4 7a2 2 0 0 1 2-2h12a2 2 0 0 1 2 2v3a2 2 0 0 0 0 4v3a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2v-3a2 2 0 0 0 0-4V7Z",
  clock: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18Zm0-13v4l3 2",
  alert: "M12 9v4m0 4h.01M10.3 4.3 2.6 18a2 2 0 0 0 1.7 3h15.4a2 2 0 0 0 1.7-3L13.7 4.3a2 2 0 0 0-3.4 0Z",
};

/** A decorative stroke icon (hidden from assistive technology: its button carries the name). */
export function icon(name, { flip = false } = {}) {
  return svg(
    "svg",
    {
      class: `icon${flip ? " icon-flip" : ""}`,
      viewBox: "0 0 24 24",
      width: 18,
      height: 18,
      fill: "none",
      stroke: "currentColor",
      "stroke-width": 1.8,
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      "aria-hidden": "true",
      focusable: "false",
    },
    svg("path", { d: ICON_PATHS[name] }),
  );
}

/** The URL itself when it is a web address, else null: a reply never links anywhere else. */
export function safeUrl(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function citationLabel(citation) {
  return [citation.title, citation.section].filter(Boolean).join(" — ") || citation.article_id || "Source";
}

function citationMarker(citation) {
  const url = safeUrl(citation.url);
  const label = `Source ${citation.n}: ${citationLabel(citation)}`;
  const text = `[${citation.n}]`;
  if (!url) return el("span", { class: "cite", title: label }, text);
  return el("a", { class: "cite", href: url, target: "_blank", rel: "noopener noreferrer", title: label, "aria-label": label }, text);
}

// Inline marks a reply may carry: citation markers, **bold**, *emphasis*, and web
// addresses (a tool's answer template may give a tracking link).
const INLINE = /\[(\d{1,3})\]|\*\*([^*\n]+)\*\*|(https?:\/\/[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'"])|(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])/g;

function inline(text, citations) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    const [whole, n, bold, url, emphasis] = match;
    let node = null;
    if (n !== undefined) {
      const citation = citations.get(Number(n));
      if (citation) node = citationMarker(citation);
    } else if (bold !== undefined) {
      node = el("strong", {}, bold);
    } else if (url !== undefined && safeUrl(url)) {
      node = el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url);
    } else if (emphasis !== undefined) {
      node = el("em", {}, emphasis);
    }
    if (!node) continue;
    nodes.push(text.slice(last, match.index), node);
    last = match.index + whole.length;
  }
  nodes.push(text.slice(last));
  return nodes.filter((n) => n !== "");
}

const LIST_ITEM = /^\s*(?:[-*•]|\d+[.)])\s+/;
const TABLE_RULE = /^\|?\s*:?-{2,}/;

function tableFrom(lines, citations) {
  const rows = lines
    .filter((line) => !TABLE_RULE.test(line.trim()))
    .map((line) => line.trim().replace(/^\||\|$/g, "").split("|").map((cell) => cell.trim()));
  const [head, ...body] = rows;
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, head.map((cell) => el("th", { scope: "col" }, inline(cell, citations))))),
      el("tbody", {}, body.map((row) => el("tr", {}, row.map((cell) => el("td", {}, inline(cell, citations)))))),
    ),
  );
}

function block(lines, citations) {
  if (lines.length > 1 && lines.every((line) => line.trim().startsWith("|"))) return tableFrom(lines, citations);
  if (lines.every((line) => LIST_ITEM.test(line))) {
    const ordered = /^\s*\d/.test(lines[0]);
    return el(ordered ? "ol" : "ul", {}, lines.map((line) => el("li", {}, inline(line.replace(LIST_ITEM, ""), citations))));
  }
  const heading = lines.length === 1 && /^#{1,6}\s+/.test(lines[0]);
  if (heading) return el("p", { class: "reply-heading" }, inline(lines[0].replace(/^#+\s+/, ""), citations));
  const p = el("p");
  lines.forEach((line, i) => {
    if (i > 0) p.append(el("br"));
    p.append(...inline(line, citations));
  });
  return p;
}

/**
 * Draws `text` into `container` as paragraphs, lists and tables, with each `[n]` that names
 * one of `citations` made a link to its source. Redrawn whole each time: a streamed reply is
 * a handful of sentences.
 */
export function renderReply(container, text, citations = []) {
  const byNumber = new Map(citations.map((c) => [Number(c.n), c]));
  const blocks = String(text || "")
    .replace(/\r\n?/g, "\n")
    .split(/\n\s*\n/)
    .map((part) => part.split("\n").filter((line) => line.trim() !== ""))
    .filter((lines) => lines.length > 0);
  container.replaceChildren(...blocks.map((lines) => block(lines, byNumber)));
}

/** The list of sources under a reply, or null when it cites none. */
export function sourcesList(citations = []) {
  if (!citations.length) return null;
  const sorted = [...citations].sort((a, b) => Number(a.n) - Number(b.n));
  return el(
    "div",
    { class: "sources" },
    el("p", { class: "sources-title" }, "Sources"),
    el(
      "ol",
      {},
      sorted.map((c) => {
        const url = safeUrl(c.url);
        const label = citationLabel(c);
        return el(
          "li",
          { value: c.n },
          url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, label) : el("span", {}, label),
        );
      }),
    ),
  );
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

/** A timestamp as the time alone when it is today, else with its date. */
export function formatTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeFormat.format(date) : dateTimeFormat.format(date);
}

/** A `<time>` element showing `formatTime`, with the full timestamp on hover. */
export function timeEl(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return el("span", {}, "");
  return el("time", { datetime: date.toISOString(), title: date.toLocaleString() }, formatTime(value));
}

/** How far a timestamp lies from now, in words: "in 12 min", "3 h ago". */
export function formatRelative(value, now = Date.now()) {
  const seconds = Math.round((new Date(value).getTime() - now) / 1000);
  if (!Number.isFinite(seconds)) return "";
  const abs = Math.abs(seconds);
  const amount = abs < 60 ? `${abs} s` : abs < 3600 ? `${Math.round(abs / 60)} min` : abs < 86400 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
  return seconds >= 0 ? `in ${amount}` : `${amount} ago`;
}

/** Millionths of a dollar as dollars: enough digits to tell small costs apart. */
export function formatMoney(micros) {
  if (micros === null || micros === undefined || !Number.isFinite(Number(micros))) return "—";
  const dollars = Number(micros) / 1e6;
  if (dollars === 0) return "$0.00";
  if (Math.abs(dollars) < 0.01) return `$${Number(dollars.toPrecision(2))}`;
  return `$${dollars.toFixed(2)}`;
}

/** Milliseconds as "850 ms" or "2.4 s"; null as a dash. */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return "—";
  const value = Number(ms);
  if (value < 1000) return `${Math.round(value)} ms`;
  return value < 60000 ? `${(value / 1000).toFixed(1).replace(/\.0$/, "")} s` : `${Math.round(value / 1000)} s`;
}

/** A rate between 0 and 1 as a percentage; null as a dash. */
export function formatPercent(rate) {
  if (rate === null || rate === undefined || !Number.isFinite(Number(rate))) return "—";
  const pct = Number(rate) * 100;
  return `${pct < 10 && pct !== 0 ? pct.toFixed(1) : Math.round(pct)}%`;
}

/** The first characters of an id, enough to tell conversations apart at a glance. */
export function shortId(id) {
  return String(id || "").slice(0, 8);
}
