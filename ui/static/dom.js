// Small DOM builders: the page never assigns HTML strings, so nothing a
// record holds can become markup.

// h builds an element: h("p", {class: "x", "data-id": id}, "text", child).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAll(el, attrs);
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

// s builds an SVG element.
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAll(el, attrs);
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function setAll(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

// Icons for activity types: 16×16 strokes, drawn in the current colour.
const ICONS = {
  create: "M8 3v10M3 8h10",
  update: "M3 13l1-4 6.5-6.5 3 3L7 12zM9.5 3.5l3 3",
  delete: "M3 4h10M6 4V3h4v1M4.5 4l.7 9h5.6l.7-9",
  migrate: "M2 8h10M9 5l3 3-3 3M14 3v10",
  end: "M3 3h10v10H3z",
  unknown: "M8 3a5 5 0 1 0 .01 0M8 6v3M8 11v.5",
};

export function icon(type) {
  return s(
    "svg",
    { class: "icon", viewBox: "0 0 16 16", width: 16, height: 16, "aria-hidden": "true", focusable: "false" },
    s("path", { d: ICONS[type] || ICONS.unknown }),
  );
}
