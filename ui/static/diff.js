// Field-level difference between an activity's oldData and newData.

// diff lists what changed from before to after, walking nested objects:
// [{path, kind: "added"|"removed"|"changed", before, after}], in the order
// the fields appear (before's first, then after's new ones). Arrays and
// other values compare whole. Unchanged fields are counted, not listed.
export function diff(before, after) {
  const out = { changes: [], unchanged: 0 };
  walk(out, [], before, after);
  return out;
}

function walk(out, path, a, b) {
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    for (const k of Object.keys(b)) if (!Object.hasOwn(a, k)) keys.push(k);
    if (keys.length === 0) {
      out.unchanged++;
      return;
    }
    for (const k of keys) {
      const p = [...path, k];
      if (!Object.hasOwn(b, k)) out.changes.push({ path: p, kind: "removed", before: a[k] });
      else if (!Object.hasOwn(a, k)) out.changes.push({ path: p, kind: "added", after: b[k] });
      else walk(out, p, a[k], b[k]);
    }
    return;
  }
  if (path.length === 0) {
    // The whole of oldData or newData is absent (null): a record created
    // or deleted. Its fields are listed one by one.
    if (a == null && isObject(b)) return walk(out, path, {}, b);
    if (isObject(a) && b == null) return walk(out, path, a, {});
    if (a == null && b == null) return;
  }
  if (same(a, b)) out.unchanged++;
  else out.changes.push({ path, kind: "changed", before: a, after: b });
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// same compares JSON values; object key order does not matter.
export function same(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => same(v, b[i]));
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
}

// fieldName spells a path for people: address.line1, items[2] stays whole.
export function fieldName(path) {
  return path.length ? path.join(".") : "(value)";
}

// show renders a JSON value as text for the diff table.
export function show(v) {
  if (v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}
