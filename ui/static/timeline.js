// The timeline: activities grouped by local day, newest first, each
// expandable into what it changed.

import { diff, fieldName, show } from "./diff.js";
import { h, icon } from "./dom.js";

const WORDS = { create: "Created", update: "Updated", delete: "Deleted", migrate: "Migrated", end: "Ended" };
const FOLD_AT = 120;

const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// dayKey is the local calendar day of a time, YYYY-MM-DD.
export function dayKey(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

export function typeWord(type) {
  return WORDS[type] || type;
}

export class Timeline {
  constructor(list) {
    this.list = list;
    this.seq = 0;
    this.clear();
    list.addEventListener("keydown", (e) => this.keydown(e));
  }

  clear() {
    this.list.replaceChildren();
    this.days = new Map(); // dayKey → {li, ol, count, countEl}
    this.ids = new Set();
    this.entries = [];
  }

  // add appends a page of activities (newest first, continuing the last
  // day when the page starts inside it). Ids already shown are skipped.
  add(activities) {
    let added = 0;
    for (const a of activities) {
      if (this.ids.has(a.id)) continue;
      this.ids.add(a.id);
      const at = new Date(a.createdAt);
      const day = this.day(dayKey(at), at);
      day.ol.append(this.entry(a, at));
      day.count++;
      day.countEl.textContent = count(day.count);
      this.entries.push({ at, a });
      added++;
    }
    return added;
  }

  day(key, at) {
    let d = this.days.get(key);
    if (d) return d;
    const id = "day-" + key;
    const countEl = h("span", { class: "day-count" });
    const ol = h("ol", { class: "entries", "aria-labelledby": id });
    const li = h("li", { class: "day", "data-day": key },
      h("h3", { id }, h("time", { datetime: key }, dayFormat.format(at)), " ", countEl), ol);
    this.list.append(li);
    d = { li, ol, count: 0, countEl };
    this.days.set(key, d);
    return d;
  }

  entry(a, at) {
    const n = ++this.seq;
    const panelId = `changes-${n}`;
    const author = a.authorDetails || {};
    const toggle = h("button", { type: "button", class: "toggle", "aria-expanded": "false", "aria-controls": panelId },
      "What changed");
    const panel = h("div", { class: "changes", id: panelId, hidden: true });
    const li = h("li", { class: `entry type-${a.type}`, "data-id": a.id },
      h("div", { class: "entry-head" },
        h("span", { class: "badge" }, icon(a.type), h("span", { class: "word" }, typeWord(a.type))),
        h("span", { class: "target-type", title: "Target type" }, a.targetType),
        a.sourceDomain ? h("span", { class: "domain", title: "Source domain" }, a.sourceDomain) : null,
      ),
      h("div", { class: "entry-meta" },
        h("span", { class: "author" }, author.fullName || author.email || "Unknown author",
          author.email && author.fullName ? h("span", { class: "email" }, " \u00b7 ", author.email) : null),
        h("span", { class: "when" },
          h("time", { datetime: a.createdAt, class: "local" }, timeFormat.format(at)),
          " ", h("code", { class: "exact", title: "Exact time recorded (UTC)" }, a.createdAt)),
      ),
      toggle, panel);
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      if (open && !panel.hasChildNodes()) panel.append(...changes(a));
      panel.hidden = !open;
    });
    return li;
  }

  // keydown moves between entries with the arrow keys, j/k, Home and End.
  keydown(e) {
    if (!e.target.classList || !e.target.classList.contains("toggle")) return;
    const all = [...this.list.querySelectorAll("button.toggle")];
    const i = all.indexOf(e.target);
    let j = -1;
    switch (e.key) {
      case "ArrowDown":
      case "j":
        j = Math.min(i + 1, all.length - 1);
        break;
      case "ArrowUp":
      case "k":
        j = Math.max(i - 1, 0);
        break;
      case "Home":
        j = 0;
        break;
      case "End":
        j = all.length - 1;
        break;
      default:
        return;
    }
    e.preventDefault();
    all[j].focus();
  }
}

function count(n) {
  return n === 1 ? "1 activity" : `${n} activities`;
}

// changes is the expanded view of an activity: the field-level diff, then
// the raw JSON on request.
function changes(a) {
  const d = diff(a.oldData, a.newData);
  const out = [];
  if (d.changes.length === 0) {
    out.push(h("p", { class: "no-changes" }, "No field changed."));
  } else {
    out.push(h("table", { class: "diff" },
      h("caption", {}, `${d.changes.length} ${d.changes.length === 1 ? "field" : "fields"} changed` +
        (d.unchanged ? `, ${d.unchanged} unchanged` : "")),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Change"),
        h("th", { scope: "col" }, "Before"), h("th", { scope: "col" }, "After"))),
      h("tbody", {}, d.changes.map((c) => h("tr", { class: c.kind, "data-field": fieldName(c.path) },
        h("th", { scope: "row" }, h("code", {}, fieldName(c.path))),
        h("td", { class: "kind" }, c.kind),
        h("td", { class: "before" }, value(c.before)),
        h("td", { class: "after" }, value(c.after))))),
    ));
  }
  out.push(h("details", { class: "raw" }, h("summary", {}, "Raw JSON"), h("pre", {}, JSON.stringify(a, null, 2))));
  return out;
}

// value shows a value, folding a long one behind its start.
function value(v) {
  if (v === undefined) return h("span", { class: "none" }, "\u2014");
  const text = typeof v === "object" && v !== null ? JSON.stringify(v, null, 2) : show(v);
  if (text.length <= FOLD_AT) return h("code", {}, text);
  const start = text.slice(0, 60).replace(/\s+/g, " ");
  const cut = start.lastIndexOf(" ");
  return h("details", { class: "fold" },
    h("summary", {}, h("code", {}, (cut > 30 ? start.slice(0, cut) : start) + "\u2026"), ` (${text.length} characters)`),
    h("pre", {}, text));
}
