// The customer chat: one conversation per browser tab (its id and access token kept in
// sessionStorage so a reload carries on), each message answered as a stream of server-sent
// events read from a POST, replies rated, and a follow-up fetched when a reply waits for an
// operator.

import { ApiError, apiClient, el, icon, renderReply, sourcesList } from "/web/common.js";

const CONVERSATION_KEY = "concierge.chat.conversation";
const CONVERSATION_TOKEN_KEY = "concierge.chat.conversation-token";
const HANDOFF_MESSAGE = "I'd like to talk to a person, please.";
/** How often, and for how long, a reply that awaits approval is watched for its outcome. */
const FOLLOW_UP_EVERY_MS = 4000;
const FOLLOW_UP_FOR_MS = 30 * 60 * 1000;

// The widget key: the one in the page's address (`?key=`) when there is one, else the one
// the server wrote into the page. Without either the chat sends none.
const widgetKey =
  new URLSearchParams(location.search).get("key") ||
  document.querySelector('meta[name="concierge-widget-key"]')?.content ||
  "";
// A widget key reaches only the conversations it holds the token of: every call carries the
// current conversation's.
const call = apiClient(
  () => widgetKey,
  () => ({ "x-conversation-token": chat.conversationToken }),
);

const ui = {
  transcript: document.getElementById("transcript"),
  scroller: document.getElementById("transcript-scroll"),
  form: document.getElementById("composer"),
  input: document.getElementById("message-input"),
  send: document.getElementById("send"),
  status: document.getElementById("turn-status"),
  notice: document.getElementById("chat-notice"),
  handoff: document.getElementById("talk-to-person"),
  reset: document.getElementById("new-conversation"),
};

const chat = {
  conversationId: sessionStorage.getItem(CONVERSATION_KEY),
  conversationToken: sessionStorage.getItem(CONVERSATION_TOKEN_KEY),
  busy: false,
  /** Ids of the messages on the page, so a transcript fetched later adds only new ones. */
  shown: new Set(),
  followUp: null,
};

// ---------------------------------------------------------------------------------------
// Server-sent events

/**
 * The events of an SSE body as `{event, data}`, `data` as the text sent. Follows the
 * format's rules: lines end in LF, CR or CRLF; `:` starts a comment (the keep-alives); an
 * event is dispatched at a blank line; one space after the colon is not part of the value.
 */
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
      const lines = buffer.split(/\r\n|\r(?!$)|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event: name || "message", data: data.join("\n") };
          name = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let fieldValue = colon === -1 ? "" : line.slice(colon + 1);
        if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
        if (field === "event") name = fieldValue;
        else if (field === "data") data.push(fieldValue);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// ---------------------------------------------------------------------------------------
// The page

function nearBottom() {
  const s = ui.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 96;
}

/** Runs a change to the transcript, keeping it scrolled to the end if it was there. */
function changeTranscript(change, { scroll = false } = {}) {
  const follow = scroll || nearBottom();
  change();
  if (follow) ui.scroller.scrollTop = ui.scroller.scrollHeight;
}

function setStatus(text, kind = "") {
  ui.status.textContent = text;
  ui.status.dataset.kind = text ? kind : "";
}

function showNotice(message) {
  ui.notice.textContent = message;
  ui.notice.hidden = !message;
}

function setBusy(busy) {
  chat.busy = busy;
  ui.send.disabled = busy;
  ui.handoff.disabled = busy;
  ui.reset.disabled = busy;
}

function userMessage(text, id) {
  const node = el(
    "li",
    { class: "msg msg-user", dataset: id ? { messageId: id } : {} },
    el("span", { class: "visually-hidden" }, "You said: "),
    el("div", { class: "bubble" }, el("p", { class: "plain" }, text)),
  );
  if (id) chat.shown.add(id);
  return node;
}

/** Rating controls for one reply: a thumb up or down, then an optional comment. */
function ratingControls(messageId) {
  const commentId = `comment-${messageId}`;
  const status = el("p", { class: "rating-status", role: "status", tabindex: "-1" });
  const comment = el("textarea", { id: commentId, class: "rating-comment", rows: 2, maxlength: 2000 });
  const submit = el("button", { type: "submit", class: "btn btn-primary btn-small" }, "Send feedback");
  const form = el(
    "form",
    { class: "rating-form", hidden: true },
    el("label", { for: commentId }, "Anything to add? (optional)"),
    comment,
    el("div", { class: "rating-actions" }, submit),
  );
  let rating = 0;
  const thumb = (value, label) =>
    el(
      "button",
      { type: "button", class: "btn-icon", "aria-label": label, title: label, "aria-pressed": "false", dataset: { rating: value }, onclick: () => choose(value) },
      icon("thumb", { flip: value < 0 }),
    );
  const up = thumb(1, "Helpful");
  const down = thumb(-1, "Not helpful");
  const group = el(
    "div",
    { class: "rating", role: "group", "aria-label": "Rate this reply" },
    el("div", { class: "rating-row" }, el("span", { class: "rating-prompt" }, "Was this helpful?"), up, down),
    form,
    status,
  );

  function choose(value) {
    rating = value;
    up.setAttribute("aria-pressed", String(value > 0));
    down.setAttribute("aria-pressed", String(value < 0));
    form.hidden = false;
    status.textContent = "";
    comment.focus();
  }

  function finish(message, kind) {
    const hadFocus = form.contains(document.activeElement);
    up.disabled = down.disabled = true;
    form.remove();
    status.textContent = message;
    status.dataset.kind = kind;
    // The form that held the focus is gone: keep the keyboard where the answer is.
    if (hadFocus) status.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!rating) return;
    const text = comment.value.trim();
    const body = { message_id: messageId, rating };
    if (text) body.comment = text;
    submit.disabled = true;
    status.textContent = "Sending…";
    status.dataset.kind = "";
    try {
      await call("/v1/feedback", { method: "POST", body });
      finish("Thanks for your feedback", "ok");
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) {
        finish("Already rated", "info");
      } else {
        status.textContent = error.message;
        status.dataset.kind = "error";
        submit.disabled = false;
      }
    }
  });

  return group;
}

/** An assistant reply on the page: filled as its events arrive, or at once from the store. */
class Reply {
  constructor() {
    this.text = "";
    this.citations = [];
    this.awaitsApproval = false;
    this.done = false;
    this.failed = false;
    this.notes = el("div", { class: "reply-notes" });
    this.typing = el("span", { class: "typing", "aria-hidden": "true" }, el("span"), el("span"), el("span"));
    this.body = el("div", { class: "reply-text" });
    this.sources = null;
    this.bubble = el("div", { class: "bubble" }, this.notes, this.typing, this.body);
    this.footer = el("div", { class: "msg-footer" });
    this.node = el(
      "li",
      { class: "msg msg-assistant", "aria-busy": "true", dataset: { state: "streaming" } },
      el("span", { class: "visually-hidden" }, "Support said: "),
      this.bubble,
      this.footer,
    );
  }

  /** A reply as stored: its text, citations and rating controls. */
  static fromMessage(message) {
    const reply = new Reply();
    const meta = message.metadata || {};
    reply.citations = Array.isArray(meta.citations) ? meta.citations : [];
    reply.text = message.content || "";
    if (meta.answered_by === "approval_pending") reply.noteApproval();
    reply.finish({ message_id: message.id });
    return reply;
  }

  draw() {
    this.typing.remove();
    renderReply(this.body, this.text, this.citations);
    const sources = sourcesList(this.citations);
    if (this.sources) this.sources.remove();
    this.sources = sources;
    if (sources) this.bubble.append(sources);
  }

  addText(piece) {
    changeTranscript(() => {
      this.text += piece;
      this.draw();
    });
  }

  addCitation(citation) {
    if (this.citations.some((c) => c.n === citation.n)) return;
    changeTranscript(() => {
      this.citations.push(citation);
      this.draw();
    });
  }

  note(kind, text) {
    const symbol = { approval: "clock", ticket: "ticket", error: "alert" }[kind];
    changeTranscript(() => {
      this.notes.append(el("p", { class: `note note-${kind}` }, symbol ? icon(symbol) : null, el("span", {}, text)));
    });
  }

  noteApproval() {
    if (this.awaitsApproval) return;
    this.awaitsApproval = true;
    this.note("approval", "This request needs a team member's approval. The outcome will appear below.");
  }

  finish({ message_id: messageId }) {
    this.draw();
    this.node.dataset.state = "done";
    this.node.setAttribute("aria-busy", "false");
    if (messageId) {
      this.node.dataset.messageId = messageId;
      chat.shown.add(messageId);
      changeTranscript(() => this.footer.append(ratingControls(messageId)));
    }
  }

  fail(message) {
    this.typing.remove();
    this.node.dataset.state = "error";
    this.node.setAttribute("aria-busy", "false");
    this.node.classList.add("msg-error");
    this.note("error", message);
  }
}

function showMessage(message) {
  if (chat.shown.has(message.id)) return;
  const node = message.role === "user" ? userMessage(message.content, message.id) : Reply.fromMessage(message).node;
  changeTranscript(() => ui.transcript.append(node));
}

function clearTranscript() {
  const intro = ui.transcript.querySelector(".msg-intro");
  ui.transcript.replaceChildren(...(intro ? [intro] : []));
  chat.shown.clear();
}

// ---------------------------------------------------------------------------------------
// Conversations

function forgetConversation() {
  chat.conversationId = null;
  chat.conversationToken = null;
  sessionStorage.removeItem(CONVERSATION_KEY);
  sessionStorage.removeItem(CONVERSATION_TOKEN_KEY);
  stopFollowUp();
}

/** Whether the server no longer has the stored conversation (its store was reset) or no
 *  longer lets this tab into it (its token is wrong or missing): either way, start afresh. */
function conversationGone(error) {
  return error.status === 404 || error.code === "conversation_forbidden";
}

async function ensureConversation() {
  if (chat.conversationId) return chat.conversationId;
  const conversation = await call("/v1/conversations", { method: "POST", body: { channel: "web" } });
  chat.conversationId = conversation.id;
  chat.conversationToken = conversation.access_token || null;
  sessionStorage.setItem(CONVERSATION_KEY, conversation.id);
  if (chat.conversationToken) sessionStorage.setItem(CONVERSATION_TOKEN_KEY, chat.conversationToken);
  else sessionStorage.removeItem(CONVERSATION_TOKEN_KEY);
  return conversation.id;
}

function lastReplyAwaitsApproval(messages) {
  const last = messages[messages.length - 1];
  return Boolean(last && last.role === "assistant" && last.metadata && last.metadata.answered_by === "approval_pending");
}

async function restoreConversation() {
  if (!chat.conversationId) return;
  setBusy(true);
  setStatus("Loading the conversation…", "loading");
  try {
    const transcript = await call(`/v1/conversations/${encodeURIComponent(chat.conversationId)}`);
    const messages = transcript.messages || [];
    changeTranscript(() => messages.forEach(showMessage), { scroll: true });
    if (lastReplyAwaitsApproval(messages)) watchForFollowUp();
  } catch (error) {
    if (conversationGone(error) || error.status === 400) forgetConversation();
    else showNotice(`The conversation could not be loaded. ${authHint(error)}`);
  } finally {
    setStatus("");
    setBusy(false);
  }
}

/** Fetches the transcript now and then until the reply an operator's decision brings. */
function watchForFollowUp() {
  if (chat.followUp) return;
  const id = chat.conversationId;
  const until = Date.now() + FOLLOW_UP_FOR_MS;
  chat.followUp = setInterval(async () => {
    if (chat.busy || document.hidden || chat.conversationId !== id) return;
    if (Date.now() > until) return stopFollowUp();
    try {
      const transcript = await call(`/v1/conversations/${encodeURIComponent(id)}`);
      if (chat.busy || chat.conversationId !== id) return;
      const fresh = (transcript.messages || []).filter((m) => !chat.shown.has(m.id));
      fresh.forEach(showMessage);
      if (fresh.some((m) => m.role === "assistant") && !lastReplyAwaitsApproval(transcript.messages)) stopFollowUp();
    } catch (error) {
      // Tried again at the next tick; a lasting failure shows when the customer sends. A
      // conversation this tab may no longer read is not worth asking for again.
      if (error instanceof ApiError && conversationGone(error) && chat.conversationId === id) stopFollowUp();
    }
  }, FOLLOW_UP_EVERY_MS);
}

function stopFollowUp() {
  clearInterval(chat.followUp);
  chat.followUp = null;
}

// ---------------------------------------------------------------------------------------
// A turn

const turnEvents = {
  meta(reply, data, user) {
    if (data.message_id) {
      user.dataset.messageId = data.message_id;
      chat.shown.add(data.message_id);
    }
  },
  tool_started(reply, data) {
    setStatus(data.display || "Working…", "tool");
  },
  tool_finished() {
    setStatus("Writing the reply…", "thinking");
  },
  approval_required(reply) {
    setStatus("Waiting for a team member to approve", "approval");
    reply.noteApproval();
  },
  escalated(reply, data) {
    const ticket = data.ticket ? `Ticket ${data.ticket} is open` : "A ticket is open";
    reply.note("ticket", `${ticket}: a member of our team will take it from here.`);
  },
  token(reply, data) {
    setStatus("");
    reply.addText(typeof data.text === "string" ? data.text : "");
  },
  citation(reply, data) {
    reply.addCitation(data);
  },
  done(reply, data) {
    reply.done = true;
    reply.finish(data);
    if (data.user_message_id) chat.shown.add(data.user_message_id);
    if (data.answered_by === "approval_pending" || reply.awaitsApproval) watchForFollowUp();
  },
  error(reply, data) {
    reply.failed = true;
    reply.fail(data.message || "Something went wrong while answering. Please try again.");
  },
};

async function openStream(text) {
  const post = async () => {
    const id = await ensureConversation();
    return call(`/v1/conversations/${encodeURIComponent(id)}/messages`, {
      method: "POST",
      body: { content: text },
      accept: "text/event-stream",
      raw: true,
    });
  };
  try {
    return await post();
  } catch (error) {
    // A conversation the server no longer has or lets this tab into: start a new one.
    if (!conversationGone(error) || !chat.conversationId) throw error;
    forgetConversation();
    return post();
  }
}

async function readTurn(response, reply, user) {
  const type = response.headers.get("content-type") || "";
  if (!type.includes("text/event-stream")) {
    // A server that answered with the whole exchange as JSON instead.
    const body = await response.json();
    const message = body.reply || body;
    reply.text = message.content || "";
    reply.citations = (message.metadata && message.metadata.citations) || [];
    reply.done = true;
    reply.finish({ message_id: message.id });
    return;
  }
  for await (const { event, data } of serverSentEvents(response.body)) {
    const handle = turnEvents[event];
    if (!handle) continue;
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      continue;
    }
    handle(reply, parsed || {}, user);
  }
}

/** What the customer is told: a refused key in their words, anything else as the server said. */
function authHint(error) {
  if (!error.isAuth) return error.message;
  return `This chat's access key is missing or no longer valid (${error.status}). Open the chat from the link you were given.`;
}

async function sendMessage(text) {
  text = text.trim();
  if (!text || chat.busy) return;
  setBusy(true);
  showNotice("");
  const user = userMessage(text);
  const reply = new Reply();
  changeTranscript(() => ui.transcript.append(user, reply.node), { scroll: true });
  setStatus("Thinking…", "thinking");
  let response;
  try {
    response = await openStream(text);
  } catch (error) {
    // Refused before anything was stored: say why and give the text back.
    reply.node.remove();
    user.classList.add("msg-failed");
    user.append(el("p", { class: "msg-failure", role: "alert" }, `Not sent. ${authHint(error)}`));
    if (!ui.input.value) ui.input.value = text;
    setStatus("");
    setBusy(false);
    return;
  }
  try {
    await readTurn(response, reply, user);
    if (!reply.done && !reply.failed) {
      reply.fail("The reply was cut off. Reload the page to see whether it arrived.");
    }
  } catch (error) {
    if (!reply.failed) reply.fail(error instanceof ApiError ? authHint(error) : "The reply was cut off. Reload the page to see whether it arrived.");
  } finally {
    setStatus("");
    setBusy(false);
  }
}

// ---------------------------------------------------------------------------------------
// Wiring

function growInput() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 180)}px`;
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value;
  if (!text.trim() || chat.busy) return;
  ui.input.value = "";
  growInput();
  sendMessage(text);
  ui.input.focus();
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});

ui.input.addEventListener("input", growInput);

ui.handoff.addEventListener("click", () => sendMessage(HANDOFF_MESSAGE));

ui.reset.addEventListener("click", () => {
  forgetConversation();
  clearTranscript();
  showNotice("");
  setStatus("");
  ui.input.focus();
});

restoreConversation();
