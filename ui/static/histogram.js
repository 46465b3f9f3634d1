// A per-day histogram of the activities loaded so far.

import { h, s } from "./dom.js";
import { dayKey } from "./timeline.js";

const MAX_DAYS = 366;
// A short range is drawn over at least this many days, so that one busy day
// does not fill the whole width.
const MIN_DAYS = 7;
const short = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

// render draws counts per local day, oldest on the left, over the days
// between the oldest and newest loaded activity (the newest MAX_DAYS).
export function render(figure, times) {
  if (times.length === 0) {
    figure.hidden = true;
    return;
  }
  const counts = new Map();
  for (const t of times) counts.set(dayKey(t), (counts.get(dayKey(t)) || 0) + 1);
  const newest = new Date(Math.max(...times));
  const oldest = new Date(Math.min(...times));
  const days = [];
  let reached = false;
  for (let d = new Date(newest.getFullYear(), newest.getMonth(), newest.getDate()); days.length < MAX_DAYS; d.setDate(d.getDate() - 1)) {
    days.unshift(new Date(d));
    reached = reached || dayKey(d) === dayKey(oldest);
    if (reached && days.length >= MIN_DAYS) break;
  }
  const max = Math.max(...days.map((d) => counts.get(dayKey(d)) || 0));
  let busiest = days[0];
  for (const d of days) if ((counts.get(dayKey(d)) || 0) > (counts.get(dayKey(busiest)) || 0)) busiest = d;
  const clipped = !reached;
  const total = days.reduce((n, d) => n + (counts.get(dayKey(d)) || 0), 0);
  const label = `${total} loaded ${total === 1 ? "activity" : "activities"} over ${days.length} ${days.length === 1 ? "day" : "days"}, ` +
    `${short.format(days[0])} to ${short.format(days[days.length - 1])}; busiest ${short.format(busiest)} with ${counts.get(dayKey(busiest))}` +
    (clipped ? `; only the newest ${MAX_DAYS} days are drawn` : "");

  const bars = days.map((d, i) => {
    const n = counts.get(dayKey(d)) || 0;
    const height = n === 0 ? 0 : Math.max(4, (n / max) * 100);
    return s("rect", { x: i + 0.1, y: 100 - height, width: 0.8, height, class: n ? "bar" : "bar empty" },
      s("title", {}, `${short.format(d)}: ${n}`));
  });
  figure.replaceChildren(
    h("figcaption", {}, "Activities per day (loaded so far)"),
    s("svg", { role: "img", "aria-label": label, viewBox: `0 0 ${days.length} 100`, preserveAspectRatio: "none" }, bars),
    h("div", { class: "axis", "aria-hidden": "true" },
      h("span", {}, short.format(days[0])),
      days.length > 1 ? h("span", {}, short.format(days[days.length - 1])) : null),
  );
  figure.hidden = false;
}
