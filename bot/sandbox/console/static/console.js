// The demo console: renders what Slack would show from the stand-in's state and sends clicks
// and commands back. Every piece of message text goes into the page through textContent or
// createTextNode (never innerHTML), so alert text holding HTML is shown, never run.
"use strict";

// `thread`: the ts of the thread open in the side pane; null before the first one is opened
// (then the newest incident's thread opens by itself), "" after the person closed it.
const state = { data: null, raw: "", channel: "C0INCIDENTS", user: "U0ONCALL1", thread: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// ------------------------------------------------------------------ mrkdwn
// Slack escapes &, < and > in message text; turn them back into characters for display.
function unescapeSlack(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

// Shortcodes the bot uses, drawn with symbols every font has (a console may have no emoji
// font); circles keep their colour. Anything else stays as typed, like Slack's fallback.
const EMOJI = {
  information_source: ["ℹ", "blue"], warning: ["⚠", "orange"], white_check_mark: ["✔", "green"],
  no_entry: ["⛔", "red"], mag: ["⌕", ""], bell: ["♪", ""], x: ["✖", "red"], red_circle: ["●", "red"],
  memo: ["✎", ""], hourglass: ["⌛", ""], test_tube: ["⚗", ""], speech_balloon: ["✉", ""],
  sparkles: ["✦", "orange"], raised_hand: ["✋", ""], "male-firefighter": ["⛑", "red"], eyes: ["◉", ""],
  arrow_forward: ["▶", ""], adhesive_bandage: ["✚", ""], rotating_light: ["◆", "red"], no_entry_sign: ["⊘", "red"],
  no_bell: ["⊘", ""], large_orange_circle: ["●", "orange"], large_blue_circle: ["●", "blue"],
  large_green_circle: ["●", "green"], grey_question: ["?", ""], chart_with_downwards_trend: ["↘", ""], book: ["☰", ""],
};

function appendText(parent, text) {
  let last = 0;
  for (const match of text.matchAll(/:([a-z0-9_+-]+):/g)) {
    const found = EMOJI[match[1]];
    if (!found) continue;
    if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
    parent.appendChild(el("span", { class: "emoji " + found[1], title: match[0], text: found[0] }));
    last = match.index + match[0].length;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

function userName(id) {
  const user = (state.data ? state.data.users : []).find((u) => u.id === id);
  return user ? user.name : id;
}

function channelName(id) {
  const channel = (state.data ? state.data.channels : []).find((c) => c.id === id);
  return channel ? channel.name : id;
}

function safeHref(url) {
  return /^(https?:|mailto:)/i.test(url) ? url : null;
}

// `<...>` control sequences: mentions, channel links, special mentions, dates, links.
function renderAngle(inner) {
  const bar = inner.indexOf("|");
  const target = bar >= 0 ? inner.slice(0, bar) : inner;
  const label = bar >= 0 ? inner.slice(bar + 1) : null;
  if (target.startsWith("@")) return el("span", { class: "mention", text: "@" + (label || userName(target.slice(1))) });
  if (target.startsWith("#")) return el("span", { class: "mention", text: "#" + (label || channelName(target.slice(1))) });
  if (target.startsWith("!subteam^")) return el("span", { class: "mention", text: label || "@" + target.slice(9) });
  if (target.startsWith("!date^")) return document.createTextNode(unescapeSlack(label || target));
  if (target.startsWith("!")) return el("span", { class: "mention", text: "@" + target.slice(1) });
  const href = safeHref(unescapeSlack(target));
  const text = unescapeSlack(label || target);
  if (!href) return document.createTextNode(text);
  return el("a", { href, target: "_blank", rel: "noopener noreferrer", text });
}

const INLINE = /<([^<>\n]+)>|`([^`\n]+)`|\*([^*\n]+)\*|(?<![A-Za-z0-9])_([^_\n]+)_(?![A-Za-z0-9])|~([^~\n]+)~/g;

function renderInline(text, parent) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) appendText(parent, unescapeSlack(text.slice(last, match.index)));
    if (match[1] !== undefined) parent.appendChild(renderAngle(match[1]));
    else if (match[2] !== undefined) parent.appendChild(el("code", { text: unescapeSlack(match[2]) }));
    else if (match[3] !== undefined) renderInline(match[3], parent.appendChild(el("b")));
    else if (match[4] !== undefined) renderInline(match[4], parent.appendChild(el("i")));
    else if (match[5] !== undefined) renderInline(match[5], parent.appendChild(el("s")));
    last = match.index + match[0].length;
  }
  if (last < text.length) appendText(parent, unescapeSlack(text.slice(last)));
}

function mrkdwn(text, cls) {
  const node = el("div", { class: "mrkdwn" + (cls ? " " + cls : "") });
  const parts = String(text || "").split("```");
  parts.forEach((part, index) => {
    if (index % 2 === 1) node.appendChild(el("pre", { text: unescapeSlack(part.replace(/^\n/, "")) }));
    else renderInline(part, node);
  });
  return node;
}

function textObject(obj) {
  if (!obj) return el("span");
  if (obj.type === "mrkdwn") return mrkdwn(obj.text);
  return el("div", { class: "mrkdwn", text: obj.text || "" });
}

// ------------------------------------------------------------------ Block Kit
function imageSrc(element) {
  if (element.slack_file && element.slack_file.id) return "/files/" + encodeURIComponent(element.slack_file.id);
  const url = element.image_url || "";
  return /^https?:\/\/(127\.0\.0\.1|localhost)[:/]/.test(url) || url.startsWith("data:image/") ? url : null;
}

function renderElement(element, where) {
  if (element.type === "button") {
    if (element.url && safeHref(element.url)) {
      return el("a", { class: "button", href: safeHref(element.url), target: "_blank", rel: "noopener noreferrer",
        text: element.text ? element.text.text : "link" });
    }
    const cls = element.style === "primary" ? "primary" : element.style === "danger" ? "danger" : "";
    return el("button", {
      class: cls, type: "button", "data-action-id": element.action_id,
      text: element.text ? element.text.text : element.action_id,
      onclick: (event) => onButton(event.currentTarget, element, where),
    });
  }
  if (element.type === "image") {
    const src = imageSrc(element);
    return src ? el("img", { src, alt: element.alt_text || "" }) : el("span", { text: "[image: " + (element.alt_text || "") + "]" });
  }
  if (element.type === "mrkdwn" || element.type === "plain_text") return textObject(element);
  return el("span", { class: "muted small", text: "[" + element.type + " (not clickable in the demo)]" });
}

function renderBlock(block, where) {
  const type = block.type;
  if (type === "section") {
    const node = el("div", { class: "block block-section" });
    const row = el("div", { class: block.accessory ? "section-with-accessory" : "" });
    if (block.text) row.appendChild(textObject(block.text));
    if (block.accessory) row.appendChild(renderElement(block.accessory, { ...where, block_id: block.block_id }));
    node.appendChild(row);
    if (block.fields) node.appendChild(el("div", { class: "fields" }, ...block.fields.map(textObject)));
    return node;
  }
  if (type === "header") return el("div", { class: "block block-header", text: block.text ? block.text.text : "" });
  if (type === "divider") return el("hr", { class: "block" });
  if (type === "context") {
    return el("div", { class: "block context" }, ...(block.elements || []).map((e) => renderElement(e, where)));
  }
  if (type === "actions") {
    return el("div", { class: "block actions" },
      ...(block.elements || []).map((e) => renderElement(e, { ...where, block_id: block.block_id })));
  }
  if (type === "image") {
    const src = imageSrc(block);
    return el("figure", { class: "block block-image" },
      block.title ? el("figcaption", { class: "small muted", text: block.title.text }) : null,
      src ? el("img", { src, alt: block.alt_text || "" }) : el("span", { text: "[image: " + (block.alt_text || "") + "]" }));
  }
  if (type === "rich_text") {
    const texts = [];
    const walk = (items) => (items || []).forEach((item) => { if (item.text) texts.push(item.text); walk(item.elements); });
    walk(block.elements);
    return el("div", { class: "block mrkdwn", text: texts.join("") });
  }
  return el("div", { class: "block muted small", text: "[" + type + " block]" });
}

function renderContent(item, where) {
  const node = el("div", { class: "content" });
  if (item.blocks && item.blocks.length) item.blocks.forEach((b) => node.appendChild(renderBlock(b, where)));
  else if (item.text) node.appendChild(mrkdwn(item.text));
  (item.attachments || []).forEach((a) => {
    const box = el("div", { class: "attachment" });
    if (a.color) box.style.borderLeftColor = /^#?[0-9a-fA-F]{3,6}$/.test(a.color) ? (a.color[0] === "#" ? a.color : "#" + a.color) : "#ddd";
    if (a.blocks) a.blocks.forEach((b) => box.appendChild(renderBlock(b, where)));
    if (a.text) box.appendChild(mrkdwn(a.text));
    node.appendChild(box);
  });
  (item.files || []).forEach((f) => {
    const src = "/files/" + encodeURIComponent(f.id);
    node.appendChild(el("div", { class: "file" },
      el("div", { class: "small muted", text: f.title || f.name }),
      f.mimetype.startsWith("image/") ? el("img", { src, alt: f.title || f.name }) : el("a", { href: src, text: f.name })));
  });
  return node;
}

function avatar(name, bot) {
  return el("div", { class: "avatar" + (bot ? "" : " human"), text: (name || "?").slice(0, 1).toUpperCase() });
}

function clock(ts) {
  const d = new Date(parseFloat(ts) * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function renderMessage(message, channel, inThread) {
  const where = { channel, ts: message.ts };
  const body = el("div", { class: "body" },
    el("div", { class: "meta" },
      el("span", { class: "author", text: message.user_name }),
      el("span", { text: clock(message.ts) }),
      message.edits ? el("span", { class: "edited", text: "(edited)" }) : null),
    renderContent(message, where));
  const node = el("div", { class: "message", "data-ts": message.ts }, avatar(message.user_name, message.bot), body);
  if (!inThread && message.replies && message.replies.length) {
    const count = message.replies.length;
    body.appendChild(el("button", {
      class: "thread-toggle" + (state.thread === message.ts ? " open" : ""), type: "button", "data-thread": message.ts,
      text: count + (count === 1 ? " reply" : " replies") + (state.thread === message.ts ? " (open)" : ""),
      onclick: () => { state.thread = message.ts; render(); },
    }));
  }
  return node;
}

function renderThread(channel) {
  const pane = document.getElementById("thread");
  const root = channel.messages.find((m) => m.ts === state.thread);
  if (!root) { pane.hidden = true; pane.replaceChildren(); return; }
  const box = el("div", { class: "thread-messages", "data-testid": "thread" },
    renderMessage(root, channel.id, true),
    el("div", { class: "small muted replies-rule", text: root.replies.length + " replies" }),
    ...root.replies.map((r) => renderMessage(r, channel.id, true)),
    ...channel.ephemerals.filter((e) => e.user === state.user && e.thread_ts === root.ts).map((e) => renderEphemeral(e, channel.id)));
  const keep = pane.querySelector(".thread-messages");
  const scroll = keep ? keep.scrollTop : 0;
  pane.hidden = false;
  pane.replaceChildren(el("div", { class: "thread-title" }, el("strong", { text: "Thread" }),
    el("button", { type: "button", class: "close", text: "✖", title: "close the thread",
      onclick: () => { state.thread = ""; render(); } })), box);
  box.scrollTop = scroll;
}

function renderEphemeral(eph, channel) {
  return el("div", { class: "ephemeral", "data-testid": "ephemeral" },
    el("div", { class: "ephemeral-label", text: "Only visible to you (" + eph.user_name + ")" }),
    renderContent(eph, { channel, ephemeral: eph.index }));
}

// ------------------------------------------------------------------ actions
async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function confirmDialog(confirm) {
  return new Promise((resolve) => {
    const backdrop = document.getElementById("dialog-backdrop");
    const dialog = document.getElementById("dialog");
    dialog.replaceChildren(
      el("h3", { text: confirm.title ? confirm.title.text : "Are you sure?" }),
      textObject(confirm.text),
      el("div", { class: "buttons" },
        el("button", { type: "button", "data-testid": "confirm-deny", text: confirm.deny ? confirm.deny.text : "Cancel",
          onclick: () => { backdrop.hidden = true; resolve(false); } }),
        el("button", { type: "button", class: confirm.style === "danger" ? "danger" : "primary", "data-testid": "confirm-yes",
          text: confirm.confirm ? confirm.confirm.text : "Yes", onclick: () => { backdrop.hidden = true; resolve(true); } })));
    backdrop.hidden = false;
  });
}

async function onButton(button, element, where) {
  if (element.confirm && !(await confirmDialog(element.confirm))) return;
  button.disabled = true;
  const body = { user: state.user, channel: where.channel, action_id: element.action_id, block_id: where.block_id };
  if (where.ephemeral !== undefined) body.ephemeral = where.ephemeral;
  else body.ts = where.ts;
  try {
    const result = await post("/api/click", body);
    setResult(result.status === 200 ? "" : "the bot answered HTTP " + result.status + ": " + result.body);
  } catch (error) {
    setResult("click failed: " + error.message);
  }
  setTimeout(refresh, 150);
}

function setResult(text) {
  document.getElementById("command-result").textContent = text;
}

async function sendCommand(event) {
  event.preventDefault();
  const command = document.getElementById("command-select").value;
  const input = document.getElementById("command-text");
  try {
    const result = await post("/api/command", { user: state.user, channel: state.channel, command, text: input.value });
    setResult(result.status === 200 ? "sent " + command + " " + input.value : "the bot answered HTTP " + result.status);
    input.value = "";
  } catch (error) {
    setResult("command failed: " + error.message);
  }
  setTimeout(refresh, 150);
}

async function toggleFault(fault) {
  try {
    await post("/api/fault", { key: fault.key, on: !fault.on });
  } catch (error) {
    setResult("fault switch failed: " + error.message);
  }
  refresh();
}

// ------------------------------------------------------------------ page
function renderSidebar(data) {
  const list = document.getElementById("channel-list");
  list.replaceChildren(...data.channels.map((c) => el("li", {
    class: c.id === state.channel ? "active" : "", text: "# " + c.name + (c.private ? " (private)" : ""),
    onclick: () => { state.channel = c.id; state.thread = null; render(); },
  })));
  document.getElementById("fault-list").replaceChildren(...data.faults.map((f) => el("div", { class: "fault" },
    el("button", { type: "button", class: f.on ? "on" : "", "data-fault": f.key, "aria-pressed": f.on ? "true" : "false",
      text: (f.on ? "■ " : "▶ ") + f.title, title: f.description, onclick: () => toggleFault(f) }),
    el("span", { class: "desc", text: f.on ? "on: " + f.description : f.description }))));
  document.getElementById("firing").textContent = data.alerting === "prometheus"
    ? "Prometheus firing: " + (data.firing.length ? data.firing.join(", ") : "nothing")
    : "No Prometheus here: recorded notifications are replayed.";
  document.getElementById("deployments").replaceChildren(...data.deployments.map((d) => el("div", {
    class: "deployment", "data-deployment": d.namespace + "/" + d.name },
    el("div", { class: "name", text: d.namespace + "/" + d.name }),
    el("div", { "data-field": "summary", text: "replicas " + d.replicas + " (ready " + d.ready + ") · revision " + d.revision + " · model " + d.version }),
    el("div", { class: "history", text: "history: " + d.history.map((h) => "r" + h.revision + " " + h.version).join(", ") }))));
}

function render() {
  const data = state.data;
  if (!data) return;
  renderSidebar(data);
  const status = document.getElementById("alerting-status");
  status.textContent = data.alerting === "prometheus" ? "alerts: real Prometheus + Alertmanager" : "alerts: replayed";
  const channel = data.channels.find((c) => c.id === state.channel) || data.channels[0];
  state.channel = channel.id;
  document.getElementById("channel-title").textContent = "#" + channel.name;
  if (state.thread === null) {
    const latest = [...channel.messages].reverse().find((m) => m.replies.length);
    if (latest) state.thread = latest.ts;
  }
  const box = document.getElementById("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const keep = box.scrollTop;
  const nodes = channel.messages.map((m) => renderMessage(m, channel.id, false));
  const inChannel = (e) => e.user === state.user && !(e.thread_ts && e.thread_ts === state.thread);
  channel.ephemerals.filter(inChannel).forEach((e) => nodes.push(renderEphemeral(e, channel.id)));
  (data.views || []).forEach((v) => nodes.push(el("div", { class: "view" },
    el("div", { class: "ephemeral-label", text: "Modal: " + (v.title ? v.title.text : "") }),
    ...v.blocks.map((b) => renderBlock(b, { channel: channel.id })))));
  if (!nodes.length) nodes.push(el("p", { class: "muted", text: "Nothing here yet." }));
  box.replaceChildren(...nodes);
  box.scrollTop = atBottom ? box.scrollHeight : keep;
  renderThread(channel);
}

async function refresh() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    const raw = await response.text();
    if (raw !== state.raw) {
      state.raw = raw;
      state.data = JSON.parse(raw);
      if (!document.getElementById("user-select").options.length) setupSelects();
      render();
    }
  } catch (error) {
    document.getElementById("alerting-status").textContent = "console lost the demo: " + error.message;
  }
}

function setupSelects() {
  const users = document.getElementById("user-select");
  users.replaceChildren(...state.data.users.filter((u) => !u.bot).map((u) => el("option", { value: u.id, text: u.name + " (" + u.real_name + ")" })));
  users.value = state.user;
  users.addEventListener("change", () => { state.user = users.value; render(); });
  const commands = document.getElementById("command-select");
  commands.replaceChildren(...state.data.commands.map((c) => el("option", { value: c, text: c })));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("composer").addEventListener("submit", sendCommand);
  refresh();
  setInterval(refresh, 1000);
});
