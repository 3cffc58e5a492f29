// The operator console: live figures, conversations and their transcripts, open tickets,
// approvals waiting for a decision, and what customers thought of the replies. Each section
// is a tab; the open one, and the approval and ticket counts, refresh every few seconds.

import {
  apiClient,
  el,
  formatMoney,
  formatMs,
  formatPercent,
  formatRelative,
  formatTime,
  icon,
  renderReply,
  shortId,
  sourcesList,
  svg,
  timeEl,
} from "/web/common.js";

const KEY_STORAGE = "concierge.console.api-key";
const NAME_STORAGE = "concierge.console.operator";
const REFRESH_EVERY_MS = 5000;
const DEFAULT_OPERATOR = "console";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// Settings and calls

const keyInput = $("api-key");
const nameInput = $("operator-name");
keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
nameInput.value = localStorage.getItem(NAME_STORAGE) || "";

function rememberKey() {
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/**
 * Takes a key handed over in the address, `/console#key=…` (a link that opens the console
 * ready to use), into the key field and this tab's storage, and takes it out of the address
 * so that it stays out of the history and of what is copied from the address bar. Whether
 * the address held a key.
 */
function takeKeyFromAddress() {
  const match = /^#key=(.*)$/.exec(location.hash);
  if (!match) return false;
  history.replaceState(null, "", `${location.pathname}${location.search}`);
  let key = "";
  try {
    key = decodeURIComponent(match[1]).trim();
  } catch {
    // Not a valid escape: no key to take.
  }
  if (key) {
    keyInput.value = key;
    rememberKey();
  }
  return true;
}

// Before the sections read the hash, which names a section, never a key.
takeKeyFromAddress();

const api = apiClient(() => keyInput.value.trim());

function operatorName() {
  return nameInput.value.trim() || DEFAULT_OPERATOR;
}

function showAuthProblem(error) {
  const banner = $("auth-banner");
  banner.hidden = !error;
  banner.textContent = error ? `${error.message} Enter an operator or admin key in the API key field above.` : "";
}

/** A call whose refusal of the key shows in the banner above every section. */
async function load(path, options) {
  try {
    const body = await api(path, options);
    showAuthProblem(null);
    return body;
  } catch (error) {
    if (error.isAuth) showAuthProblem(error);
    throw error;
  }
}

const SECTION_NAMES = {
  live: "the live figures",
  conversations: "the conversations",
  tickets: "the open tickets",
  approvals: "the pending approvals",
  feedback: "the feedback",
};

/** Shows why a section could not load (a refused key shows once, in the banner), and
 *  marks what it still shows as out of date. */
function panelError(name, error) {
  const box = $(`${name}-error`);
  const shown = Boolean(error && !error.isAuth);
  box.hidden = !shown;
  box.textContent = shown ? `Could not load ${SECTION_NAMES[name]}. ${error.message}` : "";
  $(`panel-${name}`).toggleAttribute("data-stale", Boolean(error));
}

/** A section's refresh, never running twice at once; its failures show in its panel. */
function refresher(name, run) {
  let running = null;
  return function refresh(options = {}) {
    if (running) return running;
    running = run(options)
      .then(() => panelError(name, null))
      .catch((error) => panelError(name, error))
      .finally(() => {
        running = null;
      });
    return running;
  };
}

/** Redraws a list only when its data changed, keeping the focus on the same item. */
function redrawWhenChanged(list, data, draw) {
  const fingerprint = JSON.stringify(data);
  if (list.dataset.fingerprint === fingerprint) return;
  list.dataset.fingerprint = fingerprint;
  const focused = list.contains(document.activeElement) ? document.activeElement.closest("[data-key]") : null;
  const key = focused && focused.dataset.key;
  draw();
  if (key) {
    const again = list.querySelector(`[data-key="${CSS.escape(key)}"] button, [data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

function setCount(id, n) {
  const badge = $(id);
  badge.hidden = !n;
  badge.textContent = n ? String(n) : "";
}

function emptyItem(text) {
  return el("li", { class: "empty" }, text);
}

function conversationButton(id, label = "Open conversation") {
  return el(
    "button",
    { type: "button", class: "btn btn-ghost btn-small", onclick: () => showConversation(id) },
    label,
    el("span", { class: "visually-hidden" }, ` ${id}`),
  );
}

function badge(text, kind = "") {
  return el("span", { class: `badge${kind ? ` badge-${kind}` : ""}` }, text);
}

function argumentValue(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------
// Live figures

function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

const MINUTE_MS = 60_000;

/** The window's minutes, oldest first, with the minutes the series leaves out as zero. */
function minutesOf(stats) {
  const count = stats.window_minutes || 60;
  const byMinute = new Map();
  for (const point of stats.series || []) {
    const t = Math.floor(Date.parse(point.minute) / MINUTE_MS) * MINUTE_MS;
    if (Number.isFinite(t)) byMinute.set(t, point);
  }
  const newest = Math.max(Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS, ...byMinute.keys());
  const minutes = [];
  for (let i = count - 1; i >= 0; i--) {
    const t = newest - i * MINUTE_MS;
    const point = byMinute.get(t) || {};
    minutes.push({
      t,
      requests: Number(point.requests) || 0,
      escalations: Number(point.escalations) || 0,
      cost: Number(point.cost_micros) || 0,
      p95: point.p95_ms === null || point.p95_ms === undefined ? null : Number(point.p95_ms),
    });
  }
  return minutes;
}

const W = 600;
const H = 120;

function chartFrame(label, ceiling, format, empty, ...marks) {
  const grid = [0.5, 1].map((f) =>
    svg("line", { x1: 0, x2: W, y1: H - f * H + 0.5, y2: H - f * H + 0.5, class: "grid", "vector-effect": "non-scaling-stroke" }),
  );
  const base = svg("line", { x1: 0, x2: W, y1: H, y2: H, class: "axis", "vector-effect": "non-scaling-stroke" });
  return el(
    "div",
    { class: "chart-plot" },
    empty ? el("span", { class: "chart-empty", "aria-hidden": "true" }, empty) : null,
    empty ? null : el("span", { class: "chart-y chart-y-max", "aria-hidden": "true" }, format(ceiling)),
    empty ? null : el("span", { class: "chart-y chart-y-mid", "aria-hidden": "true" }, format(ceiling / 2)),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": label, class: "chart-svg" }, grid, base, marks),
  );
}

function barsChart(minutes, value, { label, format, tip, overlay, empty, whole = false }) {
  const highest = Math.max(0, ...minutes.map(value));
  // A count's gridlines fall on whole numbers.
  const ceiling = whole ? Math.max(2, Math.ceil(niceCeiling(highest) / 2) * 2) : niceCeiling(highest);
  const slot = W / minutes.length;
  const width = Math.max(slot - 2, 1);
  const bars = minutes.map((m, i) => {
    const v = value(m);
    if (!v) return null;
    const h = (v / ceiling) * H;
    const group = svg("g", {}, svg("title", {}), svg("rect", { x: i * slot + 1, y: H - h, width, height: h, class: "bar" }));
    group.firstChild.textContent = tip(m);
    if (overlay && overlay(m)) {
      const oh = (overlay(m) / ceiling) * H;
      group.append(svg("rect", { x: i * slot + 1, y: H - oh, width, height: oh, class: "bar bar-alt" }));
    }
    return group;
  });
  return chartFrame(label, ceiling, format, highest > 0 ? null : empty, bars);
}

function lineChart(minutes, value, { label, format, tip, empty }) {
  const values = minutes.map(value);
  const ceiling = niceCeiling(Math.max(0, ...values.filter((v) => v !== null)));
  const slot = W / minutes.length;
  const x = (i) => i * slot + slot / 2;
  const y = (v) => H - (v / ceiling) * H;
  let d = "";
  let dots = "";
  values.forEach((v, i) => {
    if (v === null) return;
    const joined = i > 0 && values[i - 1] !== null;
    const point = `${x(i).toFixed(1)} ${y(v).toFixed(1)}`;
    d += `${joined ? "L" : "M"}${point} `;
    // A minute alone between quiet ones still shows, as a dot.
    if (!joined && (i === values.length - 1 || values[i + 1] === null)) dots += `M${point} h0.01 `;
  });
  const hits = values.map((v, i) => {
    if (v === null) return null;
    const target = svg("g", {}, svg("title", {}), svg("rect", { x: i * slot, y: 0, width: slot, height: H, class: "hit" }));
    target.firstChild.textContent = tip(minutes[i]);
    return target;
  });
  const line = d ? svg("path", { d, class: "line", "vector-effect": "non-scaling-stroke" }) : null;
  const alone = dots ? svg("path", { d: dots, class: "dots", "vector-effect": "non-scaling-stroke" }) : null;
  return chartFrame(label, ceiling, format, d ? null : empty, line, alone, hits);
}

function chartCard(title, plot, minutes, legend) {
  return el(
    "figure",
    { class: "chart card" },
    el("figcaption", {}, el("span", { class: "chart-title" }, title), legend || null),
    plot,
    el(
      "div",
      { class: "chart-x", "aria-hidden": "true" },
      el("span", {}, formatTime(minutes[0].t)),
      el("span", {}, formatTime(minutes[minutes.length - 1].t)),
    ),
  );
}

function plainCount(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function drawCharts(stats) {
  const minutes = minutesOf(stats);
  const total = (key) => minutes.reduce((sum, m) => sum + m[key], 0);
  const busiest = Math.max(...minutes.map((m) => m.requests));
  const p95s = minutes.map((m) => m.p95).filter((v) => v !== null);
  const span = `the last ${minutes.length} minutes`;

  const requests = barsChart(minutes, (m) => m.requests, {
    label: `Requests per minute over ${span}: ${total("requests")} in all, at most ${busiest} in one minute, ${total("escalations")} escalated.`,
    format: plainCount,
    tip: (m) => `${formatTime(m.t)}: ${m.requests} request${m.requests === 1 ? "" : "s"}${m.escalations ? `, ${m.escalations} escalated` : ""}`,
    overlay: (m) => m.escalations,
    empty: "No requests yet",
    whole: true,
  });
  const latency = lineChart(minutes, (m) => m.p95, {
    label: p95s.length
      ? `95th percentile latency per minute over ${span}: highest ${formatMs(Math.max(...p95s))}, latest ${formatMs(p95s[p95s.length - 1])}.`
      : `No latency measured over ${span}.`,
    format: (v) => formatMs(v),
    tip: (m) => `${formatTime(m.t)}: p95 ${formatMs(m.p95)}`,
    empty: "No replies yet",
  });
  const cost = barsChart(minutes, (m) => m.cost, {
    label: `Model cost per minute over ${span}: ${formatMoney(total("cost"))} in all.`,
    format: (v) => formatMoney(v),
    tip: (m) => `${formatTime(m.t)}: ${formatMoney(m.cost)}`,
    empty: "No model cost",
  });
  const legend = el(
    "span",
    { class: "legend" },
    el("span", { class: "key key-bar" }, "Requests"),
    el("span", { class: "key key-alt" }, "Escalated"),
  );
  $("live-charts").replaceChildren(
    chartCard("Requests per minute", requests, minutes, legend),
    chartCard("p95 latency", latency, minutes),
    chartCard("Model cost per minute", cost, minutes),
  );
}

function tile(label, value, hint, kind = "") {
  return el(
    "div",
    { class: `tile card${kind ? ` tile-${kind}` : ""}` },
    el("p", { class: "tile-label" }, label),
    el("p", { class: "tile-value" }, value),
    hint ? el("p", { class: "tile-hint" }, hint) : null,
  );
}

function drawTiles(stats) {
  const window = `last ${stats.window_minutes || 60} min`;
  const latency = stats.latency_ms || {};
  $("live-tiles").replaceChildren(
    tile("Requests", String(stats.requests ?? 0), window),
    tile("Latency p50", formatMs(latency.p50), "median reply"),
    tile("Latency p95", formatMs(latency.p95), "slowest 5% above"),
    tile("Resolved", formatPercent(stats.resolution_rate), "without a person"),
    tile("Escalated", formatPercent(stats.escalation_rate), "to a ticket", stats.escalation_rate > 0.25 ? "warn" : ""),
    tile("Thumbs down", formatPercent(stats.thumbs_down_rate), "of rated replies", stats.thumbs_down_rate > 0.25 ? "warn" : ""),
    tile("Model cost", formatMoney(stats.cost_micros), window),
  );
}

const refreshLive = refresher("live", async () => {
  const stats = await load("/v1/stats");
  drawTiles(stats);
  drawCharts(stats);
  $("live-updated").textContent = `Last ${stats.window_minutes || 60} minutes · updated ${new Date().toLocaleTimeString()}`;
});

// ---------------------------------------------------------------------------------------
// Conversations

let openConversationId = null;

function conversationItem(c) {
  const current = c.id === openConversationId;
  return el(
    "li",
    { dataset: { key: c.id } },
    el(
      "button",
      {
        type: "button",
        class: "list-item",
        "aria-current": current ? "true" : null,
        dataset: { conversationId: c.id },
        onclick: () => showConversation(c.id),
      },
      el("span", { class: "list-item-top" }, el("span", { class: "mono" }, shortId(c.id)), badge(c.status, c.status)),
      el(
        "span",
        { class: "list-item-sub" },
        [c.channel, c.customer_ref].filter(Boolean).join(" · "),
        " · ",
        timeEl(c.updated_at || c.created_at),
      ),
    ),
  );
}

const refreshConversations = refresher("conversations", async () => {
  const { conversations = [] } = await load("/v1/conversations?limit=50");
  const list = $("conversation-list");
  redrawWhenChanged(list, { conversations, openConversationId }, () => {
    list.replaceChildren(...(conversations.length ? conversations.map(conversationItem) : [emptyItem("No conversations yet.")]));
  });
});

function metaChips(meta) {
  const chips = [];
  if (meta.answered_by) chips.push(badge(String(meta.answered_by).replaceAll("_", " "), "neutral"));
  if (typeof meta.intent === "string") chips.push(el("span", { class: "chip" }, "intent ", el("strong", {}, meta.intent)));
  if (typeof meta.specialist === "string") chips.push(el("span", { class: "chip" }, "specialist ", el("strong", {}, meta.specialist)));
  if (meta.tool && typeof meta.tool.name === "string") chips.push(el("span", { class: "chip" }, "tool ", el("strong", { class: "mono" }, meta.tool.name)));
  if (Number.isFinite(meta.latency_ms)) chips.push(el("span", { class: "chip" }, formatMs(meta.latency_ms)));
  return chips.length ? el("div", { class: "chips" }, chips) : null;
}

function transcriptMessage(m) {
  const meta = m.metadata || {};
  const assistant = m.role === "assistant";
  const citations = Array.isArray(meta.citations) ? meta.citations : [];
  const body = el("div", { class: "reply-text" });
  if (assistant) renderReply(body, m.content, citations);
  else body.append(el("p", { class: "plain" }, m.content));
  return el(
    "li",
    { class: `tmsg tmsg-${assistant ? "assistant" : "user"}`, dataset: { messageId: m.id } },
    el("div", { class: "tmsg-head" }, el("span", { class: "tmsg-role" }, assistant ? "Assistant" : "Customer"), timeEl(m.created_at)),
    body,
    assistant ? metaChips(meta) : null,
    assistant ? sourcesList(citations) : null,
  );
}

function drawTranscript(t) {
  const facts = [
    ["Id", el("span", { class: "mono" }, t.id)],
    ["Status", badge(t.status, t.status)],
    ["Channel", t.channel],
    ["Customer", t.customer_ref || "—"],
    ["Started", timeEl(t.created_at)],
  ];
  const messages = t.messages || [];
  $("conversation-detail").replaceChildren(
    el("h3", { class: "detail-title", tabindex: "-1", id: "transcript-title" }, `Conversation ${shortId(t.id)}`),
    el("dl", { class: "facts" }, facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v)))),
    messages.length
      ? el("ol", { class: "transcript-view", "aria-label": "Transcript", id: "transcript-view" }, messages.map(transcriptMessage))
      : el("p", { class: "empty" }, "No messages yet."),
  );
}

async function loadTranscript(id, { focus = false } = {}) {
  const detail = $("conversation-detail");
  detail.setAttribute("aria-busy", "true");
  try {
    const transcript = await load(`/v1/conversations/${encodeURIComponent(id)}`);
    if (openConversationId !== id) return;
    drawTranscript(transcript);
    if (focus) $("transcript-title").focus();
  } catch (error) {
    detail.replaceChildren(el("p", { class: "panel-error" }, `The conversation could not be loaded. ${error.message}`));
  } finally {
    detail.removeAttribute("aria-busy");
  }
}

/** Opens a conversation's transcript in the Conversations tab, from anywhere. */
function showConversation(id) {
  openConversationId = id;
  for (const button of $("conversation-list").querySelectorAll(".list-item")) {
    if (button.dataset.conversationId === id) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
  history.replaceState(null, "", `#conversations/${id}`);
  select("conversations", { updateHash: false });
  loadTranscript(id, { focus: true });
}

// ---------------------------------------------------------------------------------------
// Tickets

/** A ticket's summary: its first paragraph (why it was opened), the rest on demand. */
function ticketSummary(summary) {
  const [first, ...rest] = String(summary || "").trim().split(/\n\s*\n/);
  if (!first) return null;
  return el(
    "div",
    { class: "item-text summary" },
    el("p", {}, first),
    rest.length ? el("details", {}, el("summary", {}, "The whole summary"), el("p", {}, rest.join("\n\n"))) : null,
  );
}

function ticketItem(t) {
  return el(
    "li",
    { class: "card item", dataset: { key: t.id, ticketId: t.id, conversationId: t.conversation_id || "" } },
    el(
      "div",
      { class: "item-head" },
      el("span", { class: "item-title" }, el("span", { class: "mono ticket-ref" }, t.external_ref || shortId(t.id)), " ", t.subject || "(no subject)"),
      el("span", { class: "item-badges" }, badge(t.priority || "normal", `priority-${t.priority}`), badge(t.status, t.status)),
    ),
    ticketSummary(t.summary),
    el(
      "div",
      { class: "item-foot" },
      el("span", { class: "muted" }, "Opened ", timeEl(t.created_at), t.external_ref ? " · ticket " : "", t.external_ref ? el("span", { class: "mono" }, shortId(t.id)) : ""),
      t.conversation_id ? conversationButton(t.conversation_id) : null,
    ),
  );
}

const refreshTickets = refresher("tickets", async ({ countOnly = false } = {}) => {
  const { tickets = [] } = await load("/v1/tickets?status=open");
  setCount("count-tickets", tickets.length);
  if (countOnly && $("panel-tickets").hidden) return;
  const list = $("ticket-list");
  redrawWhenChanged(list, tickets, () => {
    list.replaceChildren(...(tickets.length ? tickets.map(ticketItem) : [emptyItem("No open tickets.")]));
  });
});

// ---------------------------------------------------------------------------------------
// Approvals

/** Cards kept by approval id, so a refresh never wipes a reason being typed. */
const approvalCards = new Map();

function showDecision(kind, ...content) {
  const box = $("approval-result");
  box.className = `result result-${kind}`;
  box.replaceChildren(...content);
  box.hidden = false;
}

function decided(approval, reply, approve) {
  const title = el(
    "p",
    { class: "result-title" },
    approve ? "Approved" : "Denied",
    " ",
    el("span", { class: "mono" }, approval.tool),
    ` by ${approval.decided_by || operatorName()}.`,
  );
  if (!reply) {
    showDecision("ok", title, el("p", {}, "No reply was sent to the customer."));
    return;
  }
  const text = el("div", { class: "reply-text" });
  renderReply(text, reply.content, (reply.metadata && reply.metadata.citations) || []);
  showDecision(
    "ok",
    title,
    el("p", { class: "muted" }, "Reply sent to the customer:"),
    el("blockquote", { class: "sent-reply" }, text),
    approval.conversation_id ? conversationButton(approval.conversation_id) : null,
  );
}

async function decide(approval, approve, card) {
  const reason = card.querySelector(".reason").value.trim();
  const buttons = card.querySelectorAll("button.decide");
  buttons.forEach((b) => (b.disabled = true));
  const status = card.querySelector(".item-status");
  status.textContent = approve ? "Approving… the tool runs now." : "Denying…";
  const body = { approve, by: operatorName() };
  if (reason) body.reason = reason;
  // The card goes once decided: the focus moves to what came of the decision.
  const keepFocus = () => {
    if (card.contains(document.activeElement) || document.activeElement === document.body) $("approval-result").focus();
  };
  try {
    const result = await load(`/v1/approvals/${encodeURIComponent(approval.id)}`, { method: "POST", body });
    decided(result.approval || approval, result.reply, approve);
    keepFocus();
    card.remove();
    approvalCards.delete(approval.id);
  } catch (error) {
    const why =
      error.status === 409
        ? "This approval was already decided or has expired."
        : error.status === 404
          ? "This approval no longer exists."
          : null;
    if (why) {
      showDecision("warn", el("p", { class: "result-title" }, why), el("p", { class: "muted" }, error.message));
      keepFocus();
    } else {
      status.textContent = error.message;
      buttons.forEach((b) => (b.disabled = false));
      return;
    }
  }
  await refreshApprovals();
}

function approvalCard(a) {
  const reasonId = `reason-${a.id}`;
  const args = Object.entries(a.arguments || {});
  const card = el(
    "li",
    { class: "card item approval", dataset: { key: a.id, approvalId: a.id, conversationId: a.conversation_id || "", tool: a.tool } },
    el(
      "div",
      { class: "item-head" },
      el("span", { class: "item-title" }, el("span", { class: "mono" }, a.tool)),
      el("span", { class: "item-badges" }, badge(a.status || "pending", "pending"), el("span", { class: "muted expires" })),
    ),
    args.length
      ? el("dl", { class: "args" }, args.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", { class: "mono" }, argumentValue(v)))))
      : el("p", { class: "muted" }, "No arguments."),
    el(
      "p",
      { class: "muted item-text" },
      "Requested ",
      timeEl(a.requested_at),
      a.conversation_id ? " in conversation " : "",
      a.conversation_id ? el("span", { class: "mono" }, shortId(a.conversation_id)) : "",
    ),
    el("div", { class: "field" }, el("label", { for: reasonId }, "Reason (optional)"), el("input", { id: reasonId, class: "reason", type: "text", maxlength: 500 })),
    el(
      "div",
      { class: "item-actions" },
      el("button", { type: "button", class: "btn btn-primary decide", onclick: () => decide(a, true, card) }, "Approve"),
      el("button", { type: "button", class: "btn btn-danger decide", onclick: () => decide(a, false, card) }, "Deny"),
      a.conversation_id ? conversationButton(a.conversation_id) : null,
    ),
    el("p", { class: "item-status", role: "status" }),
  );
  return card;
}

function drawApprovals(approvals) {
  const list = $("approval-list");
  const ids = new Set(approvals.map((a) => a.id));
  for (const [id, card] of approvalCards) {
    if (!ids.has(id)) {
      card.remove();
      approvalCards.delete(id);
    }
  }
  list.querySelector(".empty")?.remove();
  approvals.forEach((a, i) => {
    let card = approvalCards.get(a.id);
    if (!card) {
      card = approvalCard(a);
      approvalCards.set(a.id, card);
    }
    const expires = a.expires_at ? `expires ${formatRelative(a.expires_at)}` : "";
    card.querySelector(".expires").textContent = expires;
    if (list.children[i] !== card) list.insertBefore(card, list.children[i] || null);
  });
  if (!approvals.length) list.append(emptyItem("No approvals are waiting."));
}

const refreshApprovals = refresher("approvals", async () => {
  const { approvals = [] } = await load("/v1/approvals");
  const pending = approvals.filter((a) => !a.status || a.status === "pending");
  setCount("count-approvals", pending.length);
  drawApprovals(pending);
});

// ---------------------------------------------------------------------------------------
// Feedback

function feedbackItem(f) {
  const good = Number(f.rating) > 0;
  return el(
    "li",
    { class: `card item feedback feedback-${good ? "up" : "down"}`, dataset: { key: f.message_id, messageId: f.message_id, conversationId: f.conversation_id || "" } },
    el(
      "div",
      { class: "item-head" },
      el("span", { class: "item-title rating-label" }, icon("thumb", { flip: !good }), good ? "Helpful" : "Not helpful"),
      el("span", { class: "muted" }, timeEl(f.created_at)),
    ),
    f.comment ? el("p", { class: "item-text comment" }, f.comment) : el("p", { class: "item-text muted" }, "No comment."),
    el(
      "div",
      { class: "item-foot" },
      el("span", { class: "muted" }, "Reply ", el("span", { class: "mono" }, shortId(f.message_id))),
      f.conversation_id ? conversationButton(f.conversation_id) : null,
    ),
  );
}

const refreshFeedback = refresher("feedback", async () => {
  const { feedback = [] } = await load("/v1/feedback?limit=50");
  const down = feedback.filter((f) => Number(f.rating) < 0).length;
  $("feedback-summary").textContent = feedback.length
    ? `${feedback.length} latest rating${feedback.length === 1 ? "" : "s"}: ${feedback.length - down} helpful, ${down} not helpful.`
    : "";
  const list = $("feedback-list");
  redrawWhenChanged(list, feedback, () => {
    list.replaceChildren(...(feedback.length ? feedback.map(feedbackItem) : [emptyItem("No ratings yet.")]));
  });
});

// ---------------------------------------------------------------------------------------
// Tabs

const sections = {
  live: refreshLive,
  conversations: refreshConversations,
  tickets: refreshTickets,
  approvals: refreshApprovals,
  feedback: refreshFeedback,
};
const tabs = [...document.querySelectorAll('[role="tab"]')];
let active = "live";

function select(name, { focus = false, updateHash = true } = {}) {
  if (!sections[name]) name = "live";
  const changed = name !== active;
  active = name;
  for (const tab of tabs) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
    if (on && focus) tab.focus();
    // On a narrow screen the tab row scrolls sideways: keep the chosen tab in sight.
    if (on) tab.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  if (updateHash) history.replaceState(null, "", `#${name}`);
  if (changed || !focus) sections[name]();
}

for (const tab of tabs) {
  tab.addEventListener("click", () => select(tab.id.replace("tab-", "")));
  tab.addEventListener("keydown", (event) => {
    const i = tabs.indexOf(tab);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    const next = tabs[(to + tabs.length) % tabs.length];
    select(next.id.replace("tab-", ""), { focus: true });
  });
}

for (const button of document.querySelectorAll("[data-refresh]")) {
  button.addEventListener("click", () => {
    const list = document.querySelector(`#panel-${button.dataset.refresh} [data-fingerprint]`);
    if (list) delete list.dataset.fingerprint;
    sections[button.dataset.refresh]();
    if (button.dataset.refresh === "conversations" && openConversationId) loadTranscript(openConversationId);
  });
}

function fromHash() {
  const [name, id] = location.hash.replace(/^#/, "").split("/");
  if (name === "conversations" && id) {
    showConversation(decodeURIComponent(id));
  } else {
    select(name || "live", { updateHash: false });
  }
}

window.addEventListener("hashchange", () => {
  if (takeKeyFromAddress()) useKey();
  else fromHash();
});

// ---------------------------------------------------------------------------------------
// Settings, ticking

$("settings").addEventListener("submit", (event) => event.preventDefault());
/** Shows what the key now in the field may see. */
function useKey() {
  sections[active]();
  refreshApprovals();
}

keyInput.addEventListener("change", () => {
  rememberKey();
  useKey();
});
nameInput.addEventListener("change", () => {
  const name = nameInput.value.trim();
  if (name) localStorage.setItem(NAME_STORAGE, name);
  else localStorage.removeItem(NAME_STORAGE);
});

function tick() {
  if (document.hidden) return;
  if (active === "live") refreshLive();
  if (active === "conversations") refreshConversations();
  if (active === "feedback") refreshFeedback();
  refreshApprovals();
  refreshTickets({ countOnly: true });
}

fromHash();
if (active !== "approvals") refreshApprovals();
if (active !== "tickets") refreshTickets({ countOnly: true });
setInterval(tick, REFRESH_EVERY_MS);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) tick();
});
