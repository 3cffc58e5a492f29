// End-to-end: a customer and an operator in headless Chromium, against the running server
// at BASE_URL (the Acme demo) started with ADMIN_KEY as its admin key (and WIDGET_KEY, when
// given, as its widget key). Each step prints one line and leaves a screenshot in
// ARTIFACTS; any uncaught page error or console error fails the step it happens in.

import { mkdtemp, mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const BASE_URL = (process.env.BASE_URL || "").replace(/\/+$/, "");
const ADMIN_KEY = process.env.ADMIN_KEY || "";
const WIDGET_KEY = process.env.WIDGET_KEY || "";
const ARTIFACTS = process.env.ARTIFACTS || path.join(path.dirname(fileURLToPath(import.meta.url)), "artifacts");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
/** A reply from a small model on two cores may take a minute; twice that is the limit. */
const REPLY_MS = 120_000;
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 375, height: 740 };
const CONVERSATION_KEY = "concierge.chat.conversation";
const CONVERSATION_TOKEN_KEY = "concierge.chat.conversation-token";
/** What Chromium logs for a request the server refused (401, 403, or 404 for a conversation
 *  it does not show), in the steps that provoke one. */
const REFUSED = /status of 40[134]\b/;
/** Acme orders above the $100 that refunds need an operator for, none refunded yet. */
const REFUNDABLE_ORDERS = ["A-10007", "A-10014", "A-10013", "A-10001"];

if (!BASE_URL) {
  console.error("BASE_URL is not set");
  process.exit(2);
}
if (!ADMIN_KEY) {
  console.error("ADMIN_KEY is not set: give the admin key the server was started with");
  process.exit(2);
}
const asAdmin = { authorization: `Bearer ${ADMIN_KEY}` };
const consoleUrl = `${BASE_URL}/console#key=${encodeURIComponent(ADMIN_KEY)}`;

// ---------------------------------------------------------------------------------------
// Steps

const problems = [];
let passed = 0;
let failed = 0;
let stepNumber = 0;

/** Fails the running step on the page's uncaught errors and console errors, except those
 *  `expected` matches. */
function watch(page, label, expected = null) {
  page.on("pageerror", (error) => problems.push(`${label}: uncaught ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    if (expected && expected.test(message.text())) return;
    const where = message.location() && message.location().url ? ` (${message.location().url})` : "";
    problems.push(`${label}: console error: ${message.text()}${where}`);
  });
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: false });
}

/** Runs one step: one line of output, and a screenshot of each page on failure. */
async function step(name, pages, run) {
  stepNumber += 1;
  const label = `${String(stepNumber).padStart(2, "0")} ${name}`;
  const started = Date.now();
  const before = problems.length;
  const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
  try {
    await run();
    if (problems.length > before) throw new Error(problems.slice(before).join("; "));
    passed += 1;
    console.log(`ok   ${label} (${seconds()} s)`);
    return true;
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${label} (${seconds()} s): ${String(error.message || error).split("\n")[0]}`);
    for (const [i, page] of pages().entries()) {
      await shot(page, `${String(stepNumber).padStart(2, "0")}-failed-${i}`).catch(() => {});
    }
    return false;
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// ---------------------------------------------------------------------------------------
// The chat

const REPLIES = "#transcript .msg-assistant:not(.msg-intro)";

async function recordStatuses(page) {
  await page.evaluate(() => {
    const status = document.getElementById("turn-status");
    window.statusesSeen = [];
    new MutationObserver(() => {
      if (status.textContent) window.statusesSeen.push({ kind: status.dataset.kind, text: status.textContent });
    }).observe(status, { childList: true, characterData: true, subtree: true, attributes: true });
  });
}

async function statusesSeen(page) {
  return page.evaluate(() => window.statusesSeen.splice(0));
}

/** Waits for the reply after `before` replies to finish; its locator and text. */
async function replyAfter(page, before) {
  await page.waitForFunction(
    ({ selector, before }) => {
      const reply = document.querySelectorAll(selector)[before];
      if (reply && reply.dataset.state !== "streaming") return true;
      const last = document.querySelector("#transcript > li:last-child");
      return Boolean(last && last.classList.contains("msg-failed"));
    },
    { selector: REPLIES, before },
    { timeout: REPLY_MS, polling: 250 },
  );
  const failure = page.locator("#transcript > li:last-child.msg-failed .msg-failure");
  if (await failure.count()) throw new Error(`the message was refused: ${await failure.innerText()}`);
  const reply = page.locator(REPLIES).nth(before);
  const text = (await reply.locator(".bubble").innerText()).trim();
  const state = await reply.getAttribute("data-state");
  check(state === "done", `the reply ended as "${state}": ${text}`);
  return { reply, text };
}

async function ask(page, message) {
  const before = await page.locator(REPLIES).count();
  await page.locator("#message-input").fill(message);
  await page.locator("#message-input").press("Enter");
  return replyAfter(page, before);
}

const stored = (page, key) => page.evaluate((k) => sessionStorage.getItem(k), key);
const conversationOf = (page) => stored(page, CONVERSATION_KEY);

async function keepInSession(page, entries) {
  await page.evaluate((pairs) => pairs.forEach(([k, v]) => sessionStorage.setItem(k, v)), entries);
}

// ---------------------------------------------------------------------------------------
// The console

async function openTab(page, name) {
  await page.getByRole("tab", { name }).click();
  check((await page.getByRole("tab", { name }).getAttribute("aria-selected")) === "true", `the ${name} tab did not open`);
}

async function noSidewaysScroll(page, what) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  check(scroll <= width + 1, `${what} is ${scroll} px wide at ${width} px: it scrolls sideways`);
}

// ---------------------------------------------------------------------------------------

const profile = await mkdtemp(path.join(tmpdir(), "concierge-e2e-"));
await mkdir(ARTIFACTS, { recursive: true });
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: DESKTOP,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
context.setDefaultTimeout(20_000);

const chat = watch(await context.newPage(), "chat");
let operator = null;
const open = () => [chat, operator].filter(Boolean);
let conversationId = null;
let conversationToken = null;
let ratedComment = null;

try {
  const reachable = await step("server answers /healthz", open, async () => {
    const response = await chat.request.get(`${BASE_URL}/healthz`);
    check(response.ok(), `/healthz answered ${response.status()}`);
  });
  if (!reachable) throw new Error("no server at BASE_URL");

  await step("auth: without a key the API refuses and the console asks for one", open, async () => {
    const anonymous = await chat.request.get(`${BASE_URL}/v1/stats`);
    const code = (await anonymous.json().catch(() => null))?.error?.code;
    check(anonymous.status() === 401 && code === "unauthenticated", `/v1/stats without a key answered ${anonymous.status()} ${code}`);
    const admin = await chat.request.get(`${BASE_URL}/v1/stats`, { headers: asAdmin });
    check(admin.ok(), `/v1/stats with ADMIN_KEY answered ${admin.status()}: is it the key the server was started with?`);

    const stranger = watch(await context.newPage(), "console without a key", REFUSED);
    try {
      await stranger.goto(`${BASE_URL}/console`);
      const banner = stranger.locator("#auth-banner");
      await banner.waitFor();
      const text = await banner.innerText();
      check(/operator or admin key/i.test(text), `the console says "${text}", not to enter an operator or admin key`);
      check((await stranger.locator("#live-tiles .tile").count()) === 0, "the console shows live figures without a key");
      await shot(stranger, "00-console-no-key");
    } finally {
      await stranger.close();
    }
  });

  await step("chat: an order question is answered with a tool", open, async () => {
    await chat.goto(`${BASE_URL}/`);
    const pageKey = await chat.evaluate(() => document.querySelector('meta[name="concierge-widget-key"]')?.content || "");
    check(pageKey, "the chat page carries no widget key");
    if (WIDGET_KEY) check(pageKey === WIDGET_KEY, "the chat page carries another widget key than WIDGET_KEY");
    await chat.evaluate((keys) => keys.forEach((k) => sessionStorage.removeItem(k)), [CONVERSATION_KEY, CONVERSATION_TOKEN_KEY]);
    await chat.reload();
    await recordStatuses(chat);
    await shot(chat, "01-chat-empty");
    const { text } = await ask(chat, "Where is my order A-10023?");
    await shot(chat, "02-chat-order");
    check(text.includes("A-10023"), `the reply does not name A-10023: ${text}`);
    const statuses = await statusesSeen(chat);
    check(statuses.some((s) => s.kind === "tool"), `no tool status was shown during the turn (saw ${JSON.stringify(statuses)})`);
    conversationId = await conversationOf(chat);
    check(conversationId, "the conversation id is not kept in sessionStorage");
    conversationToken = await stored(chat, CONVERSATION_TOKEN_KEY);
    check(conversationToken, "the conversation's access token is not kept in sessionStorage");
  });

  await step("chat: a knowledge answer cites its source", open, async () => {
    const { reply, text } = await ask(chat, "How do I reset my password?");
    await shot(chat, "03-chat-knowledge");
    const links = reply.locator(".bubble a.cite");
    check((await links.count()) >= 1, `the reply has no citation link: ${text}`);
    const href = await links.first().getAttribute("href");
    check(/^https?:\/\//.test(href || ""), `the citation links to "${href}"`);
    check((await reply.locator(".sources li").count()) >= 1, "the reply lists no sources");
  });

  await step("rating: thumbs down with a comment, seen in the console", open, async () => {
    const reply = chat.locator(REPLIES).last();
    await reply.getByRole("button", { name: "Not helpful" }).click();
    ratedComment = `The steps did not match my screen (e2e ${Date.now()})`;
    await reply.getByLabel(/Anything to add/).fill(ratedComment);
    await reply.getByRole("button", { name: "Send feedback" }).click();
    await reply.locator(".rating-status", { hasText: "Thanks" }).waitFor();
    await shot(chat, "04-chat-rated");

    operator = watch(await context.newPage(), "console");
    await operator.goto(consoleUrl);
    const address = await operator.evaluate(() => location.href);
    check(!address.includes("key=") && !address.includes(encodeURIComponent(ADMIN_KEY)), "the key is still in the console's address");
    check((await operator.locator("#api-key").inputValue()) === ADMIN_KEY, "the key from the address is not in the API key field");
    await openTab(operator, "Feedback");
    const item = operator.locator("#feedback-list .feedback", { hasText: ratedComment });
    await item.waitFor();
    check(await item.locator(".rating-label", { hasText: "Not helpful" }).count(), "the rating is not shown as not helpful");
    await shot(operator, "05-console-feedback");
  });

  await step("approval: a refund waits, an operator approves, the customer is told", open, async () => {
    // A-10007 first; a server that already refunded it in an earlier run gets the next.
    let pending = null;
    for (const order of REFUNDABLE_ORDERS) {
      const { reply, text } = await ask(chat, `Please refund order ${order} in full`);
      if (await reply.locator(".note-approval").count()) {
        pending = { order, text };
        break;
      }
    }
    await shot(chat, "06-chat-refund-pending");
    check(pending, `no refund of ${REFUNDABLE_ORDERS.join(", ")} waited for approval`);
    check(/approv/i.test(pending.text), `the reply does not say it awaits approval: ${pending.text}`);
    const repliesBefore = await chat.locator(REPLIES).count();

    await openTab(operator, "Approvals");
    const card = operator.locator(`#approval-list .approval[data-conversation-id="${conversationId}"]`).first();
    await card.waitFor();
    const approvalId = await card.getAttribute("data-approval-id");
    const tool = await card.getAttribute("data-tool");
    await shot(operator, "07-console-approval");
    await card.getByRole("button", { name: "Approve" }).click();
    const sent = operator.locator("#approval-result .sent-reply");
    await sent.waitFor({ timeout: REPLY_MS });
    const sentText = (await sent.innerText()).trim();
    check(sentText.length > 0, "the reply sent to the customer is empty");
    await operator.locator(`#approval-list [data-approval-id="${approvalId}"]`).waitFor({ state: "detached" });
    await shot(operator, "08-console-approved");

    // The chat fetches the outcome by itself.
    await chat.waitForFunction(
      ({ selector, count }) => document.querySelectorAll(selector).length > count,
      { selector: REPLIES, count: repliesBefore },
      { timeout: 30_000 },
    );
    const outcome = (await chat.locator(REPLIES).last().innerText()).trim();
    check(outcome.includes(sentText.slice(0, 40)), `the chat shows "${outcome}", not the reply sent after ${tool} was approved`);
    await shot(chat, "09-chat-refund-approved");
  });

  await step("console: the conversation and its transcript", open, async () => {
    await openTab(operator, "Conversations");
    const item = operator.locator(`#conversation-list [data-conversation-id="${conversationId}"]`);
    await item.waitFor();
    await item.click();
    const transcript = operator.locator("#transcript-view");
    await transcript.waitFor();
    await transcript.locator(".tmsg-user", { hasText: "Where is my order A-10023?" }).waitFor();
    const messages = await transcript.locator(".tmsg").count();
    check(messages >= 7, `the transcript shows ${messages} messages, expected at least 7`);
    check((await transcript.locator(".tmsg-assistant .chips .badge").count()) >= 3, "assistant messages do not show how they were answered");
    check((await transcript.locator(".tmsg-assistant .sources li").count()) >= 1, "the knowledge answer's citations are not shown");
    await shot(operator, "10-console-transcript");
  });

  await step("talk to a person: a ticket is opened and listed", open, async () => {
    const before = await chat.locator(REPLIES).count();
    await chat.getByRole("button", { name: "Talk to a person" }).click();
    const { reply, text } = await replyAfter(chat, before);
    await shot(chat, "11-chat-handoff");
    check(/T-|ticket/i.test(text), `no ticket in the reply: ${text}`);
    check(await reply.locator(".note-ticket").count(), "no ticket notice was shown");

    await openTab(operator, "Open tickets");
    const tickets = operator.locator("#ticket-list [data-ticket-id]");
    await tickets.first().waitFor();
    const ours = operator.locator(`#ticket-list [data-conversation-id="${conversationId}"]`);
    check(await ours.count(), "the open tickets do not include this conversation's ticket");
    await shot(operator, "12-console-tickets");
  });

  await step("keyboard: the message box is reached by Tab and labelled", open, async () => {
    await chat.reload();
    await chat.locator(REPLIES).first().waitFor();
    let reached = false;
    for (let i = 0; i < 150 && !reached; i++) {
      await chat.keyboard.press("Tab");
      reached = await chat.evaluate(() => document.activeElement && document.activeElement.id === "message-input");
    }
    check(reached, "Tab never reached the message box");
    const { label, visible } = await chat.evaluate(() => {
      const input = document.activeElement;
      const byFor = [...input.labels].map((l) => l.textContent.trim()).join(" ");
      return { label: input.getAttribute("aria-label") || byFor, visible: input.matches(":focus-visible") };
    });
    check(label, "the message box has no label");
    check(visible, "the message box shows no keyboard focus");
    await shot(chat, "13-chat-keyboard");

    await operator.getByRole("tab", { name: "Open tickets" }).focus();
    await operator.keyboard.press("ArrowRight");
    const selected = await operator.evaluate(() => document.activeElement.textContent.trim());
    check(selected.startsWith("Approvals"), `ArrowRight moved to "${selected}"`);
    check(!(await operator.locator("#panel-approvals").isHidden()), "ArrowRight did not show the approvals");
  });

  await step("phone width: the chat and every console section at 375 px", open, async () => {
    const phone = watch(await context.newPage(), "phone");
    try {
      await phone.setViewportSize(PHONE);
      await phone.goto(`${BASE_URL}/`);
      await keepInSession(phone, [
        [CONVERSATION_KEY, conversationId],
        [CONVERSATION_TOKEN_KEY, conversationToken],
      ]);
      await phone.reload();
      await phone.locator(REPLIES).nth(3).waitFor();
      await noSidewaysScroll(phone, "the chat");
      await shot(phone, "14-phone-chat");
      await phone.locator("#transcript-scroll").evaluate((s) => (s.scrollTop = 0));
      await shot(phone, "15-phone-chat-top");

      await phone.goto(consoleUrl);
      const sections = [
        ["Live figures", "#live-tiles .tile"],
        ["Conversations", "#conversation-list li"],
        ["Open tickets", "#ticket-list li"],
        ["Approvals", "#approval-list li"],
        ["Feedback", "#feedback-list li"],
      ];
      for (const [i, [name, content]] of sections.entries()) {
        await openTab(phone, name);
        await phone.locator(content).first().waitFor();
        if (name === "Conversations") {
          await phone.locator(`#conversation-list [data-conversation-id="${conversationId}"]`).click();
          await phone.locator("#transcript-view").waitFor();
        }
        await noSidewaysScroll(phone, `the console's ${name}`);
        await phone.screenshot({ path: path.join(ARTIFACTS, `${16 + i}-phone-console-${name.toLowerCase().replace(/ /g, "-")}.png`), fullPage: true });
      }
    } finally {
      await phone.close();
    }
  });

  await step("console: live figures at desktop width", open, async () => {
    await openTab(operator, "Live figures");
    await operator.locator("#live-tiles .tile").first().waitFor();
    const requests = await operator.locator("#live-tiles .tile").first().locator(".tile-value").innerText();
    check(Number(requests) >= 4, `the requests tile shows ${requests} after this run's turns`);
    check((await operator.locator("#live-charts svg .bar").count()) >= 1, "the requests chart has no bars");
    await operator.screenshot({ path: path.join(ARTIFACTS, "21-console-live.png"), fullPage: true });
  });

  await step("chat: a conversation kept with a wrong token gives way to a new one", open, async () => {
    const tab = watch(await context.newPage(), "chat with a wrong token", REFUSED);
    try {
      await tab.goto(`${BASE_URL}/`);
      await keepInSession(tab, [
        [CONVERSATION_KEY, conversationId],
        [CONVERSATION_TOKEN_KEY, "not-this-conversation's-token"],
      ]);
      await tab.reload();
      await tab.waitForFunction((key) => sessionStorage.getItem(key) === null, CONVERSATION_KEY);
      await tab.locator("#send:not([disabled])").waitFor();
      const notice = tab.locator("#chat-notice");
      check(await notice.isHidden(), `the chat shows an error: ${await notice.textContent()}`);
      check((await tab.locator(REPLIES).count()) === 0, "the refused conversation's messages are shown");
      const { text } = await ask(tab, "Where is my order A-10023?");
      check(text.includes("A-10023"), `the reply does not name A-10023: ${text}`);
      const fresh = await conversationOf(tab);
      check(fresh && fresh !== conversationId, "the chat did not start a conversation of its own");
      await shot(tab, "22-chat-fresh-conversation");
    } finally {
      await tab.close();
    }
  });
} catch (error) {
  console.log(`stopped: ${error.message}`);
  if (!failed) failed += 1;
} finally {
  await context.close().catch(() => {});
  await rm(profile, { recursive: true, force: true }).catch(() => {});
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
