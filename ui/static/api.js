// Calls to the query API, and what each failure means to a person.

const TOKEN_KEY = "activityhistory.token";
const API = new URL("../api/v1/activityHistory", document.baseURI);

// ApiError is a failed call, worded for the page.
export class ApiError extends Error {
  constructor(status, message, { correlationId = "", fields = null, kind = "" } = {}) {
    super(message);
    this.status = status;
    this.correlationId = correlationId;
    this.fields = fields;
    this.kind = kind; // "auth", "forbidden", "notFound", "noEndpoint", "invalid", "server", "network"
  }
}

// Session holds how the page authenticates: a pasted token (session
// storage only), or the development token the server hands out, or none
// (a gateway in front adds the header, or auth is off).
export class Session {
  constructor() {
    this.mode = "bearer";
    this.devToken = "";
  }

  async load() {
    try {
      const r = await fetch(new URL("config.json", document.baseURI), { headers: { Accept: "application/json" } });
      if (r.ok) {
        const c = await r.json();
        this.mode = c.auth || "bearer";
        this.devToken = c.token || "";
      }
    } catch {
      // The API calls will report the service as unreachable.
    }
  }

  get pasted() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  set pasted(tok) {
    if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  token() {
    return this.pasted || this.devToken;
  }

  // describe says which token the page is using.
  describe() {
    if (this.pasted) return "Using the token you pasted (kept in this tab only).";
    if (this.devToken) return "Development auth mode: using a token the service issued to this page.";
    if (this.mode === "disabled") return "Authentication is off on this service.";
    return "No token pasted: calls go without one (a gateway may add it).";
  }
}

// call GETs url with the session's token and returns the decoded JSON body
// and response, or throws an ApiError. In development mode an expired
// token is replaced once.
export async function call(session, url, { signal, what = "history" } = {}) {
  let resp;
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json" };
    const tok = session.token();
    if (tok) headers.Authorization = "Bearer " + tok;
    try {
      resp = await fetch(url, { headers, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "The service could not be reached. Check your connection and try again.", { kind: "network" });
    }
    if (resp.status === 401 && attempt === 0 && !session.pasted && session.mode === "dev") {
      await session.load();
      continue;
    }
    break;
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (resp.ok && body) return { body, resp };
  throw failure(resp, body, what);
}

function failure(resp, body, what) {
  const status = resp.status;
  const correlationId = (body && body.correlationId) || resp.headers.get("x-correlation-id") || "";
  const detail = { correlationId };
  const apiMessage = (body && body.message) || "";
  if (status === 401) {
    return new ApiError(status, "You are not signed in, or your token has expired or is not accepted here. Paste a valid bearer token under \u201cAccess token\u201d.", { ...detail, kind: "auth" });
  }
  if (status === 403) {
    const need = what === "verify" ? "audit" : "read";
    return new ApiError(status, `Your token is valid but lacks the ${need} permission needed ${what === "verify" ? "to verify a stream" : "to read history"}. Ask for a token in one of the ${need} groups.`, { ...detail, kind: "forbidden" });
  }
  if (status === 404) {
    if (apiMessage.startsWith("no such endpoint")) {
      return new ApiError(status, what === "verify" ? "This service does not offer stream verification." : "This service does not offer that request.", { ...detail, kind: "noEndpoint" });
    }
    const msg = what === "verify" ? "The event store holds no stream for this target." : "No activity history was found for this target id.";
    return new ApiError(status, msg, { ...detail, kind: "notFound" });
  }
  if (status === 400) {
    return new ApiError(status, "The request was not accepted: " + (apiMessage || "invalid parameters") + ".", { ...detail, fields: body && body.errors, kind: "invalid" });
  }
  if (status === 503) {
    const wait = Number(resp.headers.get("Retry-After"));
    const when = wait > 0 ? `in ${wait} ${wait === 1 ? "second" : "seconds"}` : "in a moment";
    return new ApiError(status, `The service is unavailable for now (503): a store it depends on is down or slow. Try again ${when}.`, { ...detail, kind: "server" });
  }
  if (status >= 500) {
    return new ApiError(status, `The service had a problem (${status}). Try again in a moment; if it persists, give support the reference below.`, { ...detail, kind: "server" });
  }
  return new ApiError(status, `Unexpected answer from the service (${status}${apiMessage ? ": " + apiMessage : ""}).`, { ...detail, kind: "server" });
}

// historyURL is one page of a target's history with the filters.
export function historyURL(state, pageSize, token) {
  const u = new URL(API);
  u.searchParams.set("targetId", state.targetId);
  u.searchParams.set("pageSize", String(pageSize));
  if (state.types.length) u.searchParams.set("type", state.types.join(","));
  if (state.domains.length) u.searchParams.set("sourceDomain", state.domains.join(","));
  if (state.from) u.searchParams.set("from", dayStart(state.from).toISOString());
  if (state.to) u.searchParams.set("to", dayStart(state.to, 1).toISOString());
  if (token) u.searchParams.set("paginationToken", token);
  return u;
}

// verifyURL is the audit endpoint verifying a target's stream.
export function verifyURL(targetId) {
  return new URL(API.pathname + "/streams/" + encodeURIComponent(targetId) + "/verify", API);
}

// dayStart is local midnight of a YYYY-MM-DD day, plus days: the UI's date
// range is whole local days, "to" inclusive; the API's "to" is exclusive.
export function dayStart(day, plus = 0) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d + plus);
}
