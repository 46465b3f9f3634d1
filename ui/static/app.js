// The page: find a target, scroll its history, filter it, verify its stream.
// Its state lives in the query string, so a link opens the same view.

import { ApiError, Session, call, historyURL, verifyURL } from "./api.js";
import { h } from "./dom.js";
import { render as renderHistogram } from "./histogram.js";
import { Timeline, typeWord } from "./timeline.js";

const PAGE_SIZE = 25;
const RECENT_KEY = "activityhistory.recent";
const RECENT_MAX = 8;
const TYPES = ["create", "update", "delete", "migrate", "end"];

const $ = (id) => document.getElementById(id);
const el = {
  search: $("search"),
  target: $("target"),
  recent: $("recent"),
  recentList: $("recent-list"),
  intro: $("intro"),
  access: $("access"),
  tokenForm: $("token-form"),
  token: $("token"),
  tokenStatus: $("token-status"),
  forget: $("forget"),
  message: $("message"),
  view: $("view"),
  title: $("view-title"),
  filterPanel: $("filter-panel"),
  filterSummary: $("filter-summary"),
  filters: $("filters"),
  types: $("filter-types"),
  domain: $("filter-domain"),
  domains: $("domains"),
  from: $("filter-from"),
  to: $("filter-to"),
  clearFilters: $("clear-filters"),
  verify: $("verify"),
  verifyResult: $("verify-result"),
  histogram: $("histogram"),
  summary: $("summary"),
  timeline: $("timeline"),
  more: $("more"),
  loadMore: $("load-more"),
};

const session = new Session();
const timeline = new Timeline(el.timeline);
let state = readState(location.search);
let view = { gen: 0, next: null, loading: false, abort: null, done: false };

// --- state and URL ---------------------------------------------------------

function readState(search) {
  const q = new URLSearchParams(search);
  const list = (k) => (q.get(k) || "").split(",").map((v) => v.trim()).filter(Boolean);
  const day = (k) => (/^\d{4}-\d{2}-\d{2}$/.test(q.get(k) || "") ? q.get(k) : "");
  return {
    targetId: (q.get("targetId") || "").trim(),
    types: list("type").filter((t) => TYPES.includes(t)),
    domains: list("sourceDomain"),
    from: day("from"),
    to: day("to"),
  };
}

function stateQuery(st) {
  const q = new URLSearchParams();
  if (st.targetId) q.set("targetId", st.targetId);
  if (st.types.length) q.set("type", st.types.join(","));
  if (st.domains.length) q.set("sourceDomain", st.domains.join(","));
  if (st.from) q.set("from", st.from);
  if (st.to) q.set("to", st.to);
  const s = q.toString();
  return s ? "?" + s : location.pathname;
}

function filtered(st) {
  return st.types.length > 0 || st.domains.length > 0 || st.from !== "" || st.to !== "";
}

function go(st, { replace = false } = {}) {
  state = st;
  const url = stateQuery(st);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  show();
}

function fillForms() {
  el.target.value = state.targetId;
  for (const box of el.types.querySelectorAll("input[type=checkbox]")) box.checked = state.types.includes(box.value);
  el.domain.value = state.domains.join(", ");
  el.from.value = state.from;
  el.to.value = state.to;
  const parts = [];
  if (state.types.length) parts.push(state.types.map(typeWord).join(", "));
  if (state.domains.length) parts.push(state.domains.join(", "));
  if (state.from || state.to) parts.push(`${state.from || "\u2026"} to ${state.to || "\u2026"}`);
  el.filterSummary.textContent = parts.length ? "\u2014 " + parts.join("; ") : "\u2014 none";
  if (parts.length) el.filterPanel.open = true;
}

// --- messages --------------------------------------------------------------

function message(text, { kind = "error", correlationId = "", fields = null } = {}) {
  const parts = [h("p", {}, text)];
  if (fields) {
    parts.push(h("ul", {}, Object.entries(fields).map(([f, msgs]) => h("li", {}, h("code", {}, f), ": ", msgs.join("; ")))));
  }
  if (correlationId) parts.push(h("p", { class: "ref" }, "Reference for support: ", h("code", {}, correlationId)));
  el.message.className = "message " + kind;
  el.message.replaceChildren(...parts);
  el.message.hidden = false;
}

function clearMessage() {
  el.message.hidden = true;
  el.message.replaceChildren();
}

function failed(err) {
  if (err.name === "AbortError") return;
  if (!(err instanceof ApiError)) {
    message("Something went wrong in the page: " + err.message);
    return;
  }
  let text = err.message;
  let kind = "error";
  if (err.kind === "notFound" && filtered(state)) {
    text = "No activities of this target match these filters.";
    kind = "empty";
  } else if (err.kind === "notFound") {
    text = `No activity history was found for \u201c${state.targetId}\u201d. Check the id; a target has history only once an activity has been recorded against it.`;
    kind = "empty";
  }
  message(text, { kind, correlationId: err.correlationId, fields: err.fields });
  if (err.kind === "auth") {
    el.access.open = true;
    el.token.focus();
  }
}

// --- history ---------------------------------------------------------------

function show() {
  fillForms();
  clearMessage();
  el.verifyResult.replaceChildren();
  if (view.abort) view.abort.abort();
  view = { gen: view.gen + 1, next: null, loading: false, abort: null, done: false };
  timeline.clear();
  renderHistogram(el.histogram, []);
  if (!state.targetId) {
    document.title = "Activity history";
    el.view.hidden = true;
    el.intro.hidden = false;
    return;
  }
  document.title = `${state.targetId} \u2013 Activity history`;
  el.intro.hidden = true;
  el.view.hidden = false;
  el.title.textContent = "History of " + state.targetId;
  el.summary.textContent = "";
  load();
}

async function load() {
  if (view.loading || view.done) return;
  const v = view;
  v.loading = true;
  v.abort = new AbortController();
  el.more.classList.add("busy");
  el.loadMore.disabled = true;
  el.summary.textContent = timeline.entries.length ? `Loading more\u2026 ${timeline.entries.length} shown so far.` : "Loading history\u2026";
  try {
    const { body } = await call(session, historyURL(state, PAGE_SIZE, v.next), { signal: v.abort.signal });
    if (v !== view) return;
    const results = body.results || [];
    if (timeline.entries.length === 0 && results.length > 0) arrived(results[0]);
    timeline.add(results);
    v.next = (body.paginationDetails && body.paginationDetails.nextToken) || null;
    v.done = v.next === null;
    renderHistogram(el.histogram, timeline.entries.map((e) => e.at));
    knownDomains(results);
    summarise();
  } catch (err) {
    if (v !== view) return;
    v.done = true;
    el.summary.textContent = "";
    failed(err);
  } finally {
    if (v === view) {
      v.loading = false;
      el.more.classList.remove("busy");
      el.loadMore.disabled = false;
      el.more.hidden = v.done;
      // The sentinel may still be in view: look again.
      if (!v.done) {
        sentinel.unobserve(el.more);
        sentinel.observe(el.more);
      }
    }
  }
}

// arrived records a target once its history is found, under its canonical
// spelling.
function arrived(first) {
  if (first.targetId && first.targetId !== state.targetId) {
    state = { ...state, targetId: first.targetId };
    history.replaceState(null, "", stateQuery(state));
    el.target.value = state.targetId;
    el.title.textContent = "History of " + state.targetId;
  }
  remember(state.targetId, first.targetType);
}

function summarise() {
  const n = timeline.entries.length;
  const what = filtered(state) ? "matching activities" : "activities";
  if (n === 0) el.summary.textContent = filtered(state) ? "No activities of this target match these filters." : "This target has no activities.";
  else if (view.done) el.summary.textContent = `Showing all ${n} ${n === 1 ? what.replace("activities", "activity") : what}.`;
  else el.summary.textContent = `Showing the newest ${n} ${what}; scroll for more.`;
}

function knownDomains(results) {
  const have = new Set([...el.domains.options].map((o) => o.value));
  for (const a of results) {
    if (a.sourceDomain && !have.has(a.sourceDomain)) {
      have.add(a.sourceDomain);
      el.domains.append(h("option", { value: a.sourceDomain }));
    }
  }
}

const sentinel = new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) load();
}, { rootMargin: "600px 0px" });
sentinel.observe(el.more);

// --- recent targets (this browser only) -----------------------------------

function recent() {
  try {
    const r = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(r) ? r.filter((x) => x && typeof x.id === "string") : [];
  } catch {
    return [];
  }
}

function remember(id, targetType) {
  const r = [{ id, targetType: targetType || "" }, ...recent().filter((x) => x.id !== id)].slice(0, RECENT_MAX);
  localStorage.setItem(RECENT_KEY, JSON.stringify(r));
  renderRecent();
}

function renderRecent() {
  const r = recent();
  el.recent.hidden = r.length === 0;
  el.recentList.replaceChildren(...r.map((x) => h("li", {},
    h("a", { href: stateQuery({ targetId: x.id, types: [], domains: [], from: "", to: "" }), "data-target": x.id },
      h("code", {}, x.id)), x.targetType ? h("span", { class: "target-type" }, x.targetType) : null)));
}

el.recentList.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-target]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey) return;
  e.preventDefault();
  go({ targetId: a.dataset.target, types: [], domains: [], from: "", to: "" });
});

// --- auditor view -----------------------------------------------------------

async function verify() {
  const target = state.targetId;
  el.verify.disabled = true;
  el.verifyResult.replaceChildren(h("p", {}, "Verifying the stream\u2026"));
  try {
    const { body } = await call(session, verifyURL(target), { what: "verify" });
    if (target !== state.targetId) return;
    el.verifyResult.replaceChildren(verdict(body));
  } catch (err) {
    if (target !== state.targetId) return;
    const e = err instanceof ApiError ? err : new ApiError(0, String(err));
    el.verifyResult.replaceChildren(h("div", { class: "verdict error" }, h("p", {}, e.message),
      e.correlationId ? h("p", { class: "ref" }, "Reference for support: ", h("code", {}, e.correlationId)) : null));
  } finally {
    el.verify.disabled = false;
  }
}

function verdict(v) {
  const rows = [];
  const head = (label, hd) => {
    if (!hd) return;
    rows.push(h("dt", {}, label), h("dd", {}, `revision ${hd.revision}, position ${hd.position}`, h("br"),
      h("code", { class: "hash" }, hd.hash)));
  };
  head("Head", v.head);
  head("Recorded head", v.recordedHead);
  const records = `${v.records} ${v.records === 1 ? "record" : "records"}`;
  if (v.verified) {
    return h("div", { class: "verdict ok", "data-verified": "true" },
      h("p", {}, h("strong", {}, "Chain intact. "), `${records} verified: every record links to the one before it and holds what was hashed when it was appended.`),
      h("dl", {}, rows));
  }
  const f = v.failure || {};
  return h("div", { class: "verdict failed", "data-verified": "false", "data-revision": f.revision },
    h("p", {}, h("strong", {}, "Verification failed. "),
      f.revision !== undefined ? `The first bad record is revision ${f.revision}: ${f.reason || "no reason given"}.` : (f.reason || "No reason given.")),
    h("p", {}, `${records} verified before it.`),
    h("dl", {}, rows));
}

// --- wiring -----------------------------------------------------------------

function renderToken() {
  el.tokenStatus.textContent = session.describe();
  el.forget.hidden = !session.pasted;
}

el.search.addEventListener("submit", (e) => {
  e.preventDefault();
  const id = el.target.value.trim();
  if (!id) {
    message("Enter a target id.", { kind: "error" });
    el.target.focus();
    return;
  }
  go({ ...state, targetId: id });
});

el.filters.addEventListener("submit", (e) => {
  e.preventDefault();
  const types = [...el.types.querySelectorAll("input:checked")].map((b) => b.value);
  const domains = el.domain.value.split(",").map((v) => v.trim()).filter(Boolean);
  const from = el.from.value;
  const to = el.to.value;
  if (from && to && from > to) {
    message("The \u201cfrom\u201d date is after the \u201cto\u201d date.", { kind: "error" });
    el.from.focus();
    return;
  }
  go({ ...state, types, domains, from, to });
});

el.clearFilters.addEventListener("click", () => go({ ...state, types: [], domains: [], from: "", to: "" }));

el.tokenForm.addEventListener("submit", (e) => {
  e.preventDefault();
  session.pasted = el.token.value.trim().replace(/^Bearer\s+/i, "");
  el.token.value = "";
  renderToken();
  el.access.open = false;
  if (state.targetId) show();
});

el.forget.addEventListener("click", () => {
  session.pasted = "";
  renderToken();
  if (state.targetId) show();
});

el.loadMore.addEventListener("click", () => load());
el.verify.addEventListener("click", () => verify());
window.addEventListener("popstate", () => {
  state = readState(location.search);
  show();
});

for (const t of TYPES) {
  el.types.append(h("label", { class: "check" }, h("input", { type: "checkbox", name: "type", value: t }), " ", typeWord(t)));
}

await session.load();
renderToken();
renderRecent();
show();
document.body.dataset.ready = "true";
