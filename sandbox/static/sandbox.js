// deploybot sandbox: shows the local Slack stand-in's channels and renders the Block Kit the
// bot sends. What you do here (a /deploy command, a click, a ticked checkbox, a modal's
// submit) goes to the sandbox, which sends it to the bot signed, exactly as Slack would.
// Plain browser JavaScript: no build step, no dependencies.
"use strict";

const S = {
  state: null,
  revision: -1,
  user: localStorage.getItem("deploybot-sandbox-user") || "",
  channel: null, // channel id shown
  thread: null, // {channel, ts} of the open thread
  modalId: null, // view id of the modal on screen
  poll: null, // AbortController of the running long poll
};

const EMOJI = {
  warning: "⚠️", x: "❌", white_check_mark: "✅", heavy_check_mark: "✔️", rewind: "⏪",
  fire: "🔥", hourglass_flowing_sand: "⏳", hourglass: "⌛", lock: "🔒", unlock: "🔓",
  eyes: "👀", bell: "🔔", rotating_light: "🚨", rocket: "🚀", tada: "🎉", memo: "📝",
  information_source: "ℹ️", no_entry: "⛔", pager: "📟", "+1": "👍", mag: "🔍",
};

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "html") node.innerHTML = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key.startsWith("data")) node.setAttribute(key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// -- talking to the sandbox ---------------------------------------------------------------

async function post(path, body) {
  const reply = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: S.user, ...body }),
  });
  const answer = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new Error(answer.error || `HTTP ${reply.status}`);
  return answer;
}

async function pollLoop() {
  for (;;) {
    const controller = new AbortController();
    S.poll = controller;
    try {
      const reply = await fetch(
        `/sandbox/state?user=${encodeURIComponent(S.user)}&after=${S.revision}`,
        { signal: controller.signal, cache: "no-store" },
      );
      if (reply.ok) {
        const state = await reply.json();
        S.state = state;
        S.revision = state.revision;
        render();
      } else {
        await sleep(700);
      }
    } catch (error) {
      if (error.name !== "AbortError") await sleep(1000);
    }
  }
}

function refreshNow() {
  S.revision = -1;
  if (S.poll) S.poll.abort();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

// -- Slack's mrkdwn -----------------------------------------------------------------------

function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function decodeEntities(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function nameOf(id) {
  return (S.state && S.state.names[id]) || id;
}

// <@U123>, <#C123|name>, <!subteam^S123|@handle>, <!here>, <https://x|label>
function token(inner) {
  const [target, label] = inner.split("|", 2);
  if (target.startsWith("@")) return `<span class="mention">@${escapeHtml(nameOf(target.slice(1)))}</span>`;
  if (target.startsWith("#")) {
    const id = target.slice(1);
    return `<a href="#" class="channel-link" data-goto-channel="${escapeHtml(id)}">#${escapeHtml(label || nameOf(id))}</a>`;
  }
  if (target.startsWith("!subteam^")) {
    const handle = label || "@" + nameOf(target.slice(9));
    return `<span class="mention">${escapeHtml(handle.startsWith("@") ? handle : "@" + handle)}</span>`;
  }
  if (target.startsWith("!")) return `<span class="mention">@${escapeHtml(target.slice(1))}</span>`;
  const text = escapeHtml(decodeEntities(label || target));
  const permalink = target.match(/\/archives\/([A-Z0-9]+)\/p(\d+)/);
  if (permalink) {
    const ts = permalink[2].slice(0, -6) + "." + permalink[2].slice(-6);
    return `<a href="#" data-goto-channel="${escapeHtml(permalink[1])}" data-goto-ts="${ts}">${text}</a>`;
  }
  if (/^(https?:|mailto:)/.test(target)) {
    return `<a href="${escapeHtml(decodeEntities(target))}" target="_blank" rel="noopener noreferrer">${text}</a>`;
  }
  return text;
}

function mrkdwn(source) {
  const saved = [];
  const keep = (html) => `\u0000${saved.push(html) - 1}\u0000`;
  let text = String(source || "").replace(/<([^<>]+)>/g, (_, inner) => keep(token(inner)));
  text = escapeHtml(decodeEntities(text)); // placeholders (\u0000n\u0000) pass unchanged
  text = text.replace(/```([\s\S]*?)```/g, (_, code) => keep(`<pre>${code.replace(/^\n/, "")}</pre>`));
  text = text.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${code}</code>`));
  text = text.replace(/(^|[^\w*])\*(?!\s)([^*\n]+?)\*(?!\w)/g, "$1<b>$2</b>");
  text = text.replace(/(^|[^\w_])_(?!\s)([^_\n]+?)_(?!\w)/g, "$1<i>$2</i>");
  text = text.replace(/(^|[^\w~])~(?!\s)([^~\n]+?)~(?!\w)/g, "$1<s>$2</s>");
  text = text.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
  text = text.replace(/\n/g, "<br>");
  for (let round = 0; round < 3 && text.includes("\u0000"); round++) {
    text = text.replace(/\u0000(\d+)\u0000/g, (_, n) => saved[Number(n)]);
  }
  return text;
}

function textObject(object) {
  if (!object) return "";
  if (object.type === "mrkdwn") return mrkdwn(object.text);
  return escapeHtml(object.text || "").replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
}

// -- Block Kit ----------------------------------------------------------------------------

// ctx: {item, interactive, modal} — item is the message a click belongs to.
function renderBlocks(blocks, ctx) {
  return blocks.map((block) => renderBlock(block, ctx));
}

function renderBlock(block, ctx) {
  switch (block.type) {
    case "header":
      return el("div", { class: "block header", html: textObject(block.text) });
    case "section": {
      const node = el("div", { class: "block section" + (block.accessory ? " with-accessory" : "") });
      const main = el("div", {});
      if (block.text) main.append(el("div", { class: "text", html: textObject(block.text) }));
      if (block.fields) {
        main.append(el("div", { class: "fields" },
          block.fields.map((field) => el("div", { class: "field", html: textObject(field) }))));
      }
      node.append(main);
      if (block.accessory) node.append(renderElement(block.accessory, block, ctx));
      return node;
    }
    case "context":
      return el("div", { class: "block context" },
        (block.elements || []).map((e) => e.type === "image"
          ? el("img", { src: e.image_url, alt: e.alt_text, width: 16, height: 16 })
          : el("span", { html: textObject(e) })));
    case "divider":
      return el("hr", { class: "block divider" });
    case "actions":
      return el("div", { class: "block actions", dataBlockId: block.block_id },
        (block.elements || []).map((e) => renderElement(e, block, ctx)));
    case "input":
      return renderInput(block, ctx);
    default:
      return el("div", { class: "block unknown muted" }, `[${block.type} block]`);
  }
}

function renderElement(element, block, ctx) {
  if (element.type === "button") {
    const button = el("button", {
      type: "button",
      class: "bk-button" + (element.style ? " " + element.style : ""),
      dataActionId: element.action_id,
      disabled: !ctx.interactive,
      html: textObject(element.text),
    });
    button.addEventListener("click", async () => {
      if (element.confirm && !(await confirmDialog(element.confirm))) return;
      button.disabled = true;
      await sendAction(ctx.item, block, element, {});
      button.disabled = false;
    });
    return button;
  }
  if (element.type === "checkboxes") {
    const ticked = new Set((element.initial_options || []).map((o) => o.value));
    const box = el("div", { class: "bk-checkboxes", dataActionId: element.action_id });
    for (const option of element.options || []) {
      const input = el("input", {
        type: "checkbox", value: option.value, checked: ticked.has(option.value),
        disabled: !ctx.interactive,
      });
      input.addEventListener("change", async () => {
        const selected = [...box.querySelectorAll("input:checked")].map((i) => i.value);
        box.classList.add("busy");
        await sendAction(ctx.item, block, element, { selected });
        box.classList.remove("busy");
      });
      box.append(el("label", { class: "bk-option", dataValue: option.value },
        input, el("span", { html: textObject(option.text) })));
    }
    return box;
  }
  if (element.type === "static_select") {
    const select = el("select", { dataActionId: element.action_id, disabled: !ctx.interactive },
      el("option", { value: "" }, element.placeholder ? element.placeholder.text : "Choose…"),
      (element.options || []).map((o) => el("option", { value: o.value }, o.text.text)));
    select.addEventListener("change", () => sendAction(ctx.item, block, element, { selected: select.value }));
    return select;
  }
  return el("span", { class: "muted" }, `[${element.type}]`);
}

async function sendAction(item, block, element, extra) {
  try {
    await post("/sandbox/action", {
      channel: item.channel, ts: item.ts, action_id: element.action_id,
      block_id: block.block_id || null, ...extra,
    });
  } catch (error) {
    toast(error.message);
  }
}

// -- messages -----------------------------------------------------------------------------

function renderItem(item, { inThread }) {
  const ephemeral = item.kind === "ephemeral";
  const slackbot = item.user === "USLACKBOT";
  const who = slackbot ? "Slackbot" : nameOf(item.user);
  const node = el("div", {
    class: "message" + (ephemeral ? " ephemeral" : ""),
    dataTs: item.ts, dataChannel: item.channel, dataKind: item.kind,
  });
  node.append(el("div", { class: "avatar" + (item.user === "U0BOT" ? " bot" : slackbot ? " slackbot" : "") },
    who.slice(0, 1).toUpperCase()));
  const body = el("div", { class: "body" },
    el("div", { class: "meta" }, el("b", {}, who),
      item.user === "U0BOT" ? el("span", { class: "app" }, "APP") : null,
      item.edited ? el("span", { class: "muted" }, "(edited)") : null));
  const interactive = !ephemeral;
  if (item.blocks && item.blocks.length) {
    body.append(...renderBlocks(item.blocks, { item, interactive }));
  } else {
    body.append(el("div", { class: "block text", html: mrkdwn(item.text) }));
  }
  const replies = (item.replies || []).filter((r) => r.kind === "message").length;
  if (!inThread && replies) {
    body.append(el("a", {
      class: "replies-link", dataThreadTs: item.ts,
      onclick: () => openThread(item.channel, item.ts),
    }, `${replies} ${replies === 1 ? "reply" : "replies"}`));
  }
  node.append(body);
  return node;
}

function openThread(channel, ts) {
  S.thread = { channel, ts };
  render();
}

function channelById(id) {
  return S.state.channels.find((c) => c.id === id);
}

function renderList(container, items, options) {
  const nearBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 80;
  const before = container.scrollTop;
  container.replaceChildren(...items.map((item) => renderItem(item, options)));
  container.scrollTop = nearBottom ? container.scrollHeight : before;
}

// -- the page -----------------------------------------------------------------------------

function render() {
  const state = S.state;
  if (!state) return;
  renderUsers(state);
  if (!S.channel || !channelById(S.channel)) S.channel = state.channels[0] && state.channels[0].id;
  renderChannels(state);
  const channel = channelById(S.channel);
  $("#channel-name").textContent = channel ? (channel.home ? "" : "#") + channel.name : "";
  $("#channel-hint").textContent = "type /deploy help to see the commands";
  renderList($("#messages"), channel ? channel.items : [], { inThread: false });
  renderThread(state);
  renderPanels(state);
  renderModal(state);
}

function renderUsers(state) {
  const select = $("#user");
  if (!state.users.some((u) => u.id === S.user)) {
    S.user = state.users[0].id;
    refreshNow();
  }
  if (select.options.length !== state.users.length) {
    select.replaceChildren(...state.users.map((u) => el("option", { value: u.id }, `${u.name} (${u.title})`)));
  }
  select.value = S.user;
  const me = state.users.find((u) => u.id === S.user);
  $("#user-title").textContent = me ? `${me.id} · ${me.title}` : "";
}

function renderChannels(state) {
  $("#channels").replaceChildren(...state.channels.map((channel) => el("li", {
    class: channel.id === S.channel ? "active" : "",
    dataChannelName: channel.name,
    onclick: () => {
      S.channel = channel.id; S.thread = null; render();
      // The Home tab: opening it sends app_home_opened, and the bot publishes the view.
      if (channel.home) post("/sandbox/home", {}).catch((error) => toast(error.message));
    },
  }, (channel.home ? "\u{1F3E0} " : "# ") + channel.name,
  channel.home ? null : el("span", { class: "count" }, String(channel.items.length || "")))));
}

function renderThread(state) {
  const panel = $("#thread");
  const channel = S.thread && channelById(S.thread.channel);
  const parent = channel && channel.items.find((i) => i.ts === S.thread.ts);
  panel.hidden = !parent;
  if (!parent) return;
  $("#thread-channel").textContent = "#" + channel.name;
  renderList($("#thread-messages"), [parent, ...parent.replies], { inThread: true });
}

function renderPanels(state) {
  if (state.services.length) {
    $("#services").replaceChildren(...state.services.map((s) => el("li", { dataService: s.key },
      el("span", { class: "dot " + (s.healthy ? "ok" : "bad") }), el("b", {}, s.key), " ",
      el("span", {}, s.healthy ? "healthy" : "failing"),
      el("div", { class: "muted" }, s.detail),
      el("button", {
        type: "button", dataServiceAction: s.healthy ? "break" : "heal",
        onclick: () => post("/sandbox/service", { key: s.key, healthy: !s.healthy }).catch((e) => toast(e.message)),
      }, s.healthy ? "Break service" : "Heal service"))));
  }
  if (state.cluster.length) {
    $("#cluster").replaceChildren(...state.cluster.map((d) => el("li", { dataDeployment: `${d.namespace}/${d.name}` },
      el("span", { class: "dot " + (d.rolled_out ? "ok" : "wait") }),
      el("b", {}, `deployment/${d.name}`), ` -n ${d.namespace}`,
      el("div", {}, `${d.image.split("/").pop()} · revision ${d.revision} · ${d.ready}/${d.replicas} ready`),
      el("div", { class: "muted" }, d.status),
      el("button", {
        type: "button",
        onclick: () => post("/sandbox/rollout", { namespace: d.namespace, name: d.name }).catch((e) => toast(e.message)),
      }, "Roll out next version"))));
  }
  if (state.pages.length) {
    $("#pages").replaceChildren(...state.pages.map((p) => el("li", { dataDedupKey: p.dedup_key, dataStatus: p.status },
      el("span", { class: "status-" + p.status }, p.status), ` · ${p.severity}`,
      el("div", {}, p.summary),
      el("div", { class: "muted" }, `${p.dedup_key} · events: ${p.events.join(", ")}`))));
  }
}

// -- modals and confirmations -------------------------------------------------------------

function renderModal(state) {
  const view = state.views[0];
  const overlay = $("#overlay");
  if (overlay.dataset.kind === "confirm") return;
  if (!view) {
    if (S.modalId) { overlay.hidden = true; overlay.replaceChildren(); S.modalId = null; }
    return;
  }
  if (S.modalId === view.id) return; // keep what is being typed
  S.modalId = view.id;
  const body = el("div", { class: "dialog-body" }, renderBlocks(view.blocks || [], { item: null, interactive: true, modal: true }));
  const close = el("button", { type: "button", class: "bk-button", onclick: () => closeModal(view) },
    view.close ? view.close.text : "Cancel");
  const submit = view.submit
    ? el("button", { type: "submit", class: "bk-button primary" }, view.submit.text)
    : null;
  const form = el("form", { class: "dialog", dataViewId: view.id, dataCallbackId: view.callback_id },
    el("header", {}, view.title ? view.title.text : ""), body, el("footer", {}, close, submit));
  form.addEventListener("submit", (event) => { event.preventDefault(); submitModal(view, form, submit); });
  overlay.dataset.kind = "modal";
  overlay.replaceChildren(form);
  overlay.hidden = false;
  const first = form.querySelector("select, textarea, input");
  if (first) first.focus();
}

function renderInput(block) {
  const element = block.element || {};
  let control;
  if (element.type === "static_select") {
    control = el("select", { name: block.block_id },
      el("option", { value: "" }, element.placeholder ? element.placeholder.text : "Choose…"),
      (element.options || []).map((o) => el("option", { value: o.value }, o.text.text)));
  } else if (element.multiline) {
    control = el("textarea", { name: block.block_id, maxlength: element.max_length,
      placeholder: element.placeholder && element.placeholder.text });
  } else {
    control = el("input", { name: block.block_id, maxlength: element.max_length,
      placeholder: element.placeholder && element.placeholder.text });
  }
  return el("div", { class: "input-block", dataBlockId: block.block_id },
    el("label", {}, block.label ? block.label.text : "", block.optional ? el("span", { class: "muted" }, " (optional)") : null),
    control, block.hint ? el("div", { class: "muted" }, block.hint.text) : null,
    el("div", { class: "error", hidden: true }));
}

async function submitModal(view, form, button) {
  const values = {};
  for (const control of form.querySelectorAll("[name]")) values[control.name] = control.value;
  button.disabled = true;
  try {
    const answer = await post("/sandbox/submit", { view_id: view.id, values });
    for (const box of form.querySelectorAll(".input-block")) {
      const error = answer.errors && answer.errors[box.dataset.blockId];
      box.classList.toggle("invalid", Boolean(error));
      const line = box.querySelector(".error");
      line.hidden = !error;
      line.textContent = error || "";
    }
    if (answer.closed) hideOverlay();
  } catch (error) {
    toast(error.message);
  } finally {
    button.disabled = false;
  }
}

async function closeModal(view) {
  hideOverlay();
  await post("/sandbox/close", { view_id: view.id }).catch((e) => toast(e.message));
}

function hideOverlay() {
  const overlay = $("#overlay");
  overlay.hidden = true;
  overlay.replaceChildren();
  delete overlay.dataset.kind;
}

function confirmDialog(confirm) {
  return new Promise((resolve) => {
    const overlay = $("#overlay");
    const done = (answer) => {
      hideOverlay();
      S.modalId = null;
      resolve(answer);
      render();
    };
    const yes = el("button", {
      type: "button", class: "bk-button " + (confirm.style === "danger" ? "danger" : "primary"),
      dataConfirm: "yes", onclick: () => done(true),
    }, confirm.confirm ? confirm.confirm.text : "Yes");
    const no = el("button", { type: "button", class: "bk-button", dataConfirm: "no", onclick: () => done(false) },
      confirm.deny ? confirm.deny.text : "Cancel");
    overlay.dataset.kind = "confirm";
    overlay.replaceChildren(el("div", { class: "dialog confirm", role: "alertdialog" },
      el("header", {}, confirm.title ? confirm.title.text : "Are you sure?"),
      el("div", { class: "dialog-body", html: textObject(confirm.text).replace(/\n/g, "<br>") }),
      el("footer", {}, no, yes)));
    overlay.hidden = false;
    yes.focus();
  });
}

// -- wiring -------------------------------------------------------------------------------

document.addEventListener("click", (event) => {
  const link = event.target.closest("[data-goto-channel]");
  if (!link) return;
  event.preventDefault();
  const channel = link.dataset.gotoChannel;
  if (!channelById(channel)) return;
  S.channel = channel;
  const ts = link.dataset.gotoTs;
  const item = ts && channelById(channel).items.find((i) => i.ts === ts || i.replies.some((r) => r.ts === ts));
  S.thread = item ? { channel, ts: item.ts } : null;
  render();
});

$("#user").addEventListener("change", (event) => {
  S.user = event.target.value;
  localStorage.setItem("deploybot-sandbox-user", S.user);
  refreshNow();
});

$("#close-thread").addEventListener("click", () => { S.thread = null; render(); });

$("#composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("#command");
  const text = input.value.trim();
  if (!text || !S.channel) return;
  input.value = "";
  try {
    await post("/sandbox/command", { channel: S.channel, text });
  } catch (error) {
    toast(error.message);
    input.value = text;
  }
});

pollLoop();
