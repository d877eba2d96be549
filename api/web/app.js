// The web page's script: sign-in with the API's own bearer tokens, the tasks and the chat.
// It talks only to this origin's API (/api/{user_id}/...). User text is always set as text
// (textContent, never HTML), and the Content-Security-Policy the page is served with allows
// no other script.
"use strict";

const TOKEN_KEY = "todo.token";
const NEXT_INSTANCE_WAIT_MS = 30000;
const TASK_FIELDS = ["title", "description", "priority", "tags", "due_at", "time_zone", "recurrence", "reminders"];

const $ = (id) => document.getElementById(id);
const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

let session = null; // { token, user, exp }
let expiry = null; // the timer that ends the session when its token expires
const list = { cursor: null, next: null, request: 0 };
const chat = { conversation: null, busy: false };
let editing = null; // the task the dialog edits; null when it creates one

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

// ---- elements -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function show(node, visible) {
  node.hidden = !visible;
}

function say(node, text) {
  node.textContent = text || "";
  show(node, Boolean(text));
}

function notice(text) {
  say($("notice"), text);
}

// ---- sign-in ----------------------------------------------------------------------------

function claimsOf(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims.sub !== "string" || typeof claims.exp !== "number") return null;
    return claims;
  } catch {
    return null;
  }
}

// The token a sign-in link carries in its fragment (#token=...), which never reaches a
// server; the fragment is removed from the address bar at once.
function tokenFromLink() {
  if (!location.hash) return null;
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  history.replaceState(null, "", location.pathname + location.search);
  return token ? token.trim() : null;
}

function signIn(token) {
  const claims = claimsOf(token);
  if (!claims) {
    signOut("That is not a token of this API: paste the whole token, or open a new sign-in link.");
    return;
  }
  if (claims.exp * 1000 <= Date.now()) {
    signOut("Your sign-in has expired. Get a new sign-in link (cargo xtask token <user> --link) and open it.");
    return;
  }
  session = { token, user: claims.sub, exp: claims.exp };
  watchExpiry();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("user-name").textContent = claims.sub;
  show($("sign-in"), false);
  show($("nav"), true);
  show($("who"), true);
  showView("tasks");
}

// Ends the session when its token expires (timers wait at most 2^31 - 1 ms, so a long
// lifetime is watched in steps).
function watchExpiry() {
  clearTimeout(expiry);
  if (!session) return;
  const left = session.exp * 1000 - Date.now();
  if (left <= 0) {
    signOut("Your sign-in has expired. Get a new sign-in link (cargo xtask token <user> --link) and open it.");
    return;
  }
  expiry = setTimeout(watchExpiry, Math.min(left + 500, 2147483647));
}

function signOut(message) {
  clearTimeout(expiry);
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const id of ["nav", "who", "tasks-view", "chat-view", "notice"]) show($(id), false);
  if ($("task-dialog").open) $("task-dialog").close();
  $("task-list").replaceChildren();
  $("messages").replaceChildren();
  $("conversation-list").replaceChildren();
  chat.conversation = null;
  say($("sign-in-message"), message);
  show($("sign-in"), true);
  $("token-input").value = "";
  $("token-input").focus();
}

// ---- the API ----------------------------------------------------------------------------

async function api(method, path, body) {
  if (!session) throw new ApiError(401, "unauthorized", "not signed in");
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api/${encodeURIComponent(session.user)}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", `The service cannot be reached (${e.message}). Check that it is running and try again.`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const error = (data && data.error) || {};
  if (response.status === 401) {
    const why = error.message || "the token was refused";
    const expired = /expired/.test(why);
    signOut(expired
      ? `Your sign-in has expired (${why}). Get a new sign-in link and open it.`
      : `You were signed out: ${why}. Sign in again.`);
    throw new ApiError(401, "unauthorized", why);
  }
  if (response.status === 410) {
    signOut("This account has been deleted.");
    throw new ApiError(410, "user_deleted", error.message || "account deleted");
  }
  if (!response.ok) {
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || `The service answered ${response.status}.`, error.field);
  }
  return data;
}

// ---- views ------------------------------------------------------------------------------

function showView(name) {
  const tasks = name === "tasks";
  notice("");
  show($("tasks-view"), tasks);
  show($("chat-view"), !tasks);
  $("show-tasks").setAttribute("aria-pressed", String(tasks));
  $("show-chat").setAttribute("aria-pressed", String(!tasks));
  if (tasks) loadTasks(list.cursor);
  else loadConversations();
}

// ---- tasks ------------------------------------------------------------------------------

function instantOf(localValue) {
  // A datetime-local value is read in the browser's zone, as the user typed it.
  return localValue ? new Date(localValue).toISOString() : null;
}

function listQuery(cursor) {
  const form = $("filters");
  const query = new URLSearchParams();
  const text = (name) => form.elements[name].value.trim();
  if (text("q")) query.set("q", text("q"));
  if (text("status") !== "all") query.set("status", text("status"));
  if (text("priority")) query.set("priority", text("priority"));
  if (text("tag")) query.set("tag", text("tag"));
  if (text("due_after")) query.set("due_after", instantOf(text("due_after")));
  if (text("due_before")) query.set("due_before", instantOf(text("due_before")));
  if (form.elements.overdue.checked) query.set("overdue", "true");
  query.set("sort", text("sort"));
  query.set("order", text("order"));
  query.set("limit", text("limit"));
  if (cursor) query.set("cursor", cursor);
  return query.toString();
}

async function loadTasks(cursor) {
  // Only the latest listing is shown, whichever answer comes last.
  const request = ++list.request;
  say($("filters-error"), "");
  $("list-status").textContent = "Loading…";
  let page;
  try {
    page = await api("GET", `/tasks?${listQuery(cursor)}`);
  } catch (e) {
    if (request !== list.request) return;
    $("list-status").textContent = "";
    if (e.status !== 401 && e.status !== 410) say($("filters-error"), e.message);
    return;
  }
  if (request !== list.request) return;
  list.cursor = cursor || null;
  list.next = page.next_cursor;
  $("task-list").replaceChildren(...page.items.map(taskItem));
  $("list-status").textContent = page.items.length === 0
    ? (cursor ? "No more tasks." : "No tasks match. Create one with “New task”.")
    : `${page.items.length} task${page.items.length === 1 ? "" : "s"} on this page.`;
  show($("next-page"), Boolean(page.next_cursor));
  show($("first-page"), Boolean(cursor));
}

function dueText(task) {
  if (task.due_date) return `Due ${task.due_date} (all day, ${task.time_zone})`;
  if (task.due_local) return `Due ${task.due_local.slice(0, 16).replace("T", " ")} (${task.time_zone})`;
  return null;
}

function isOverdue(task) {
  return !task.completed && task.due_at && new Date(task.due_at).getTime() < Date.now();
}

function taskItem(task) {
  const title = el("span", { class: "title", text: task.title });
  const toggle = el("button", { type: "button", class: "toggle", text: task.completed ? "Reopen" : "Complete" });
  toggle.setAttribute("aria-label", `${task.completed ? "Reopen" : "Complete"} ${task.title}`);
  toggle.addEventListener("click", () => (task.completed ? reopen(task, toggle) : complete(task, toggle)));
  const edit = el("button", { type: "button", class: "edit", text: "Edit" });
  edit.setAttribute("aria-label", `Edit ${task.title}`);
  edit.addEventListener("click", () => openTaskDialog(task));
  const remove = el("button", { type: "button", class: "delete danger", text: "Delete" });
  remove.setAttribute("aria-label", `Delete ${task.title}`);
  remove.addEventListener("click", () => removeTask(task, remove));

  const meta = el("div", { class: "meta" },
    el("span", { class: `badge ${task.priority}`, text: `${task.priority} priority` }));
  const due = dueText(task);
  if (due) meta.append(el("span", { class: "due", text: due }));
  if (isOverdue(task)) meta.append(el("span", { class: "badge overdue", text: "Overdue" }));
  if (task.recurrence) meta.append(el("span", { class: "repeats", text: `Repeats ${task.recurrence.frequency}` }));
  for (const tag of task.tags) meta.append(el("span", { class: "badge tag", text: `#${tag}` }));
  if (task.reminders && task.reminders.length) {
    meta.append(el("span", { class: "reminders", text: `Reminders: ${task.reminders.join(", ")}` }));
  }
  if (task.completed) meta.append(el("span", { class: "state", text: "Completed" }));

  return el("li", { class: task.completed ? "task done" : "task", "data-id": task.id },
    title,
    el("div", { class: "controls" }, toggle, edit, remove),
    task.description ? el("p", { class: "description", text: task.description }) : null,
    meta);
}

async function run(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (e) {
    if (e.status !== 401 && e.status !== 410) notice(e.message);
  } finally {
    button.disabled = false;
  }
}

function complete(task, button) {
  return run(button, async () => {
    await api("POST", `/tasks/${task.id}/complete`);
    notice(`Completed “${task.title}”.`);
    await loadTasks(list.cursor);
    if (task.recurrence) awaitNextInstance(task);
  });
}

function reopen(task, button) {
  return run(button, async () => {
    await api("POST", `/tasks/${task.id}/reopen`);
    notice(`Reopened “${task.title}”.`);
    await loadTasks(list.cursor);
  });
}

function removeTask(task, button) {
  if (!window.confirm(`Delete “${task.title}”?`)) return Promise.resolve();
  return run(button, async () => {
    await api("DELETE", `/tasks/${task.id}`);
    notice(`Deleted “${task.title}”.`);
    await loadTasks(list.cursor);
  });
}

// The recurring-tasks service makes the next instance when it consumes the completion
// event; the page looks for it for a while and shows it when it is there.
async function awaitNextInstance(task) {
  const series = task.recurrence.series_id;
  const occurrence = task.recurrence.occurrence;
  notice(`Completed “${task.title}”. Waiting for its next instance…`);
  const deadline = Date.now() + NEXT_INSTANCE_WAIT_MS;
  while (session && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    let page;
    try {
      page = await api("GET", "/tasks?recurring=true&status=pending&sort=created&order=desc&limit=200");
    } catch {
      return;
    }
    const next = page.items.find((t) => t.recurrence && t.recurrence.series_id === series
      && t.recurrence.occurrence > occurrence);
    if (next) {
      notice(`The next instance of “${next.title}” is here${dueText(next) ? `: ${dueText(next).toLowerCase()}` : ""}.`);
      if (!$("tasks-view").hidden) await loadTasks(list.cursor);
      return;
    }
  }
  if (session) {
    notice(`Completed “${task.title}”. Its next instance has not appeared yet: it shows in the list once the recurring-tasks service has made it.`);
  }
}

// ---- the task form ----------------------------------------------------------------------

function dueKind() {
  return $("task-form").elements.due_kind.value;
}

function showDueInputs() {
  const kind = dueKind();
  for (const id of ["t-due-at", "t-due-at-label"]) show($(id), kind === "time");
  for (const id of ["t-due-date", "t-due-date-label"]) show($(id), kind === "day");
}

function clearFieldErrors() {
  say($("task-form-error"), "");
  for (const field of TASK_FIELDS) {
    say($(`err-${field}`), "");
  }
  for (const input of $("task-form").querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function openTaskDialog(task) {
  editing = task || null;
  const form = $("task-form");
  form.reset();
  clearFieldErrors();
  $("task-form-title").textContent = task ? "Edit task" : "New task";
  const f = form.elements;
  f.title.value = task ? task.title : "";
  f.description.value = task ? task.description : "";
  f.priority.value = task ? task.priority : "medium";
  f.tags.value = task ? task.tags.join(", ") : "";
  f.time_zone.value = task ? task.time_zone : browserZone();
  f.recurrence.value = task && task.recurrence ? task.recurrence.frequency : "";
  f.reminders.value = task && task.reminders ? task.reminders.join(", ") : "";
  let kind = "none";
  if (task && task.due_date) {
    kind = "day";
    f.due_date.value = task.due_date;
  } else if (task && task.due_local) {
    kind = "time";
    f.due_at.value = task.due_local.slice(0, 16);
  }
  f.due_kind.value = kind;
  showDueInputs();
  $("task-dialog").showModal();
  f.title.focus();
}

function listOf(raw) {
  return raw.split(",").map((s) => s.trim()).filter(Boolean);
}

function formBody() {
  const f = $("task-form").elements;
  const kind = dueKind();
  return {
    title: f.title.value,
    description: f.description.value,
    priority: f.priority.value,
    tags: listOf(f.tags.value),
    due_at: kind === "time" ? f.due_at.value || null : kind === "day" ? f.due_date.value || null : null,
    time_zone: f.time_zone.value.trim(),
    recurrence: f.recurrence.value || null,
    reminders: listOf(f.reminders.value),
  };
}

// What an edit changes: only the fields that differ (a due time is sent again with a new
// zone, so the time the form shows is the time kept).
function changes(task, body) {
  const before = {
    title: task.title,
    description: task.description,
    priority: task.priority,
    tags: task.tags,
    due_at: task.due_date || (task.due_local ? task.due_local.slice(0, 16) : null),
    time_zone: task.time_zone,
    recurrence: task.recurrence ? task.recurrence.frequency : null,
    reminders: task.reminders || [],
  };
  const patch = {};
  for (const field of TASK_FIELDS) {
    if (JSON.stringify(before[field]) !== JSON.stringify(body[field])) patch[field] = body[field];
  }
  if ("time_zone" in patch && body.due_at !== null) patch.due_at = body.due_at;
  return patch;
}

function showFieldError(error) {
  const slot = error.field && $(`err-${error.field}`);
  if (slot) {
    say(slot, error.message);
    const input = error.field === "due_at"
      ? $(dueKind() === "day" ? "t-due-date" : "t-due-at")
      : $("task-form").elements[error.field];
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  } else {
    say($("task-form-error"), error.message);
  }
}

async function saveTask(event) {
  event.preventDefault();
  clearFieldErrors();
  const body = formBody();
  const save = $("task-save");
  save.disabled = true;
  try {
    if (editing) {
      const patch = changes(editing, body);
      if (Object.keys(patch).length > 0) await api("PATCH", `/tasks/${editing.id}`, patch);
      notice(`Saved “${body.title}”.`);
    } else {
      const created = await api("POST", "/tasks", body);
      notice(`Created “${created.title}”.`);
    }
    $("task-dialog").close();
    await loadTasks(editing ? list.cursor : null);
  } catch (e) {
    if (e.status !== 401 && e.status !== 410) showFieldError(e);
  } finally {
    save.disabled = false;
  }
}

// ---- the chat ---------------------------------------------------------------------------

async function loadConversations() {
  let page;
  try {
    page = await api("GET", "/conversations?limit=50");
  } catch (e) {
    if (e.status !== 401 && e.status !== 410) say($("chat-error"), e.message);
    return;
  }
  $("conversation-list").replaceChildren(...page.items.map((c) => {
    const when = new Date(c.updated_at).toLocaleString();
    const button = el("button", { type: "button", text: `${when} · ${c.message_count} messages` });
    if (c.id === chat.conversation) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => openConversation(c.id));
    return el("li", {}, button);
  }));
  if (page.items.length === 0) {
    $("conversation-list").append(el("li", { class: "muted", text: "None yet: send a message to start one." }));
  }
}

function messageItem(message) {
  const body = message; // { seq, created_at, role, ... }
  if (body.role === "user") {
    return el("li", { class: "message user" }, el("span", { class: "role", text: "You" }), body.content);
  }
  if (body.role === "assistant") {
    const calls = (body.tool_calls || []).map((c) => c.name);
    const text = body.content || (calls.length ? `(used ${calls.join(", ")})` : "");
    return el("li", { class: "message assistant" }, el("span", { class: "role", text: "Assistant" }), text);
  }
  // A tool's result: its first line says what it did (the rest is the task as JSON).
  return el("li", { class: "message tool" },
    el("span", { class: "role", text: `${body.name}${body.is_error ? " (refused)" : ""}` }),
    body.content.split("\n")[0]);
}

async function openConversation(id) {
  say($("chat-error"), "");
  let conversation;
  try {
    conversation = await api("GET", `/conversations/${id}?limit=200`);
  } catch (e) {
    if (e.status !== 401 && e.status !== 410) say($("chat-error"), e.message);
    return;
  }
  chat.conversation = id;
  $("messages").replaceChildren(...conversation.messages.map(messageItem));
  await loadConversations();
}

function newConversation() {
  chat.conversation = null;
  $("messages").replaceChildren();
  say($("chat-error"), "");
  loadConversations();
  $("chat-input").focus();
}

function chatProblem(e) {
  if (e.code === "conflict") {
    return "This conversation is still answering an earlier message. Wait for that answer, then send yours again.";
  }
  if (e.code === "unavailable" && /busy/.test(e.message)) {
    return `The chat is busy with other conversations right now; try again in a moment. (${e.message})`;
  }
  if (e.code === "unavailable") {
    return `The chat cannot answer: no chat model is configured or the model cannot be reached. Your tasks still work without it. (${e.message})`;
  }
  return e.message;
}

async function sendMessage(event) {
  event.preventDefault();
  if (chat.busy) return;
  const input = $("chat-input");
  const message = input.value.trim();
  if (!message) {
    say($("chat-error"), "Write a message first.");
    input.focus();
    return;
  }
  say($("chat-error"), "");
  chat.busy = true;
  $("chat-send").disabled = true;
  $("chat-status").textContent = "Waiting for the answer…";
  const body = { message, time_zone: browserZone() };
  if (chat.conversation) body.conversation_id = chat.conversation;
  try {
    const reply = await api("POST", "/chat", body);
    input.value = "";
    await openConversation(reply.conversation_id);
    if (reply.changes.length) {
      const items = reply.changes.map((c) => el("li", { text: `${c.action}: ${c.task.title}` }));
      $("messages").append(el("li", { class: "message" },
        el("span", { class: "role", text: "Changed tasks" }),
        el("ul", { class: "changes" }, ...items)));
      list.cursor = null;
    }
    if (reply.stopped) {
      $("messages").append(el("li", { class: "message tool", text: `The turn stopped early (${reply.stopped}).` }));
    }
  } catch (e) {
    if (e.status !== 401 && e.status !== 410) say($("chat-error"), chatProblem(e));
  } finally {
    chat.busy = false;
    $("chat-send").disabled = false;
    $("chat-status").textContent = "";
  }
}

// ---- start ------------------------------------------------------------------------------

function fillTimeZones() {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  $("time-zones").replaceChildren(...["UTC", ...zones].map((zone) => el("option", { value: zone })));
}

function start() {
  fillTimeZones();
  // On a phone-sized screen the filters start folded away, under the list's heading.
  if (window.matchMedia("(max-width: 40rem)").matches) $("find").open = false;
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token-input").value.trim());
  });
  $("sign-out").addEventListener("click", () => signOut("You signed out."));
  $("show-tasks").addEventListener("click", () => showView("tasks"));
  $("show-chat").addEventListener("click", () => showView("chat"));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadTasks(null);
  });
  $("filters").addEventListener("reset", () => setTimeout(() => loadTasks(null), 0));
  $("next-page").addEventListener("click", () => loadTasks(list.next));
  $("first-page").addEventListener("click", () => loadTasks(null));
  $("new-task").addEventListener("click", () => openTaskDialog(null));
  $("task-form").addEventListener("submit", saveTask);
  $("task-form").addEventListener("change", (event) => {
    if (event.target.name === "due_kind") showDueInputs();
  });
  $("task-cancel").addEventListener("click", () => $("task-dialog").close());
  $("chat-form").addEventListener("submit", sendMessage);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) sendMessage(event);
  });
  $("new-conversation").addEventListener("click", newConversation);

  // A sign-in link opened in a tab that already shows the page.
  window.addEventListener("hashchange", () => {
    const linked = tokenFromLink();
    if (linked) signIn(linked);
  });
  const token = tokenFromLink() || sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else signOut("");
}

start();
