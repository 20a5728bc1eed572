/** A stand-in for fraise-auth's refresh rotation, enough to tell one refresh from a replay. */
export interface Call {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Record<string, unknown> | null;
  credentials?: RequestCredentials;
}

export function fakeServer(opts: { transport?: "body" | "cookie"; mfa?: boolean } = {}) {
  const transport = opts.transport ?? "body";
  const calls: Call[] = [];
  let counter = 1;
  let access = "a1";
  let revoked = false;
  const spent = new Set<string>();
  const expiresAt = () => new Date(Date.now() + 15 * 60_000).toISOString();
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
  const error = (status: number, code: string, message = code, extra: Record<string, string> = {}) =>
    json(status, { detail: { code, message, ...extra } }, { "x-request-id": "req-1" });
  const user = { id: "u1", email: "a@example.com", name: null, email_verified: false };
  const tokens = () => {
    const body: Record<string, unknown> = { access_token: access, token_type: "bearer", expires_at: expiresAt() };
    if (transport === "body") body.refresh_token = `r${counter}`;
    return body;
  };

  const fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(String(input), "http://auth.test");
    const headers = Object.fromEntries(Object.entries((init.headers ?? {}) as Record<string, string>));
    const body = init.body ? (JSON.parse(String(init.body)) as Record<string, unknown>) : null;
    calls.push({ method: init.method ?? "GET", path: url.pathname, headers, body, credentials: init.credentials });
    // Let concurrent callers really overlap.
    await new Promise((r) => setTimeout(r, 5));
    switch (`${init.method} ${url.pathname}`) {
      case "POST /auth/login":
        if (opts.mfa) return json(200, { mfa_required: true, mfa_token: "m1", methods: ["totp", "recovery_code"], expires_at: expiresAt() });
        return json(200, { user, ...tokens() });
      case "POST /auth/mfa/verify":
        if (body?.mfa_token !== "m1") return error(401, "MFA_TOKEN_EXPIRED");
        if (body?.code !== "123456") return error(401, "INVALID_MFA_CODE");
        return json(200, { user, ...tokens() });
      case "POST /auth/refresh": {
        if (revoked) return error(401, "INVALID_TOKEN");
        const presented = transport === "body" ? String(body?.refresh_token) : `r${counter}`;
        if (spent.has(presented)) {
          revoked = true;
          return error(403, "TOKEN_THEFT_DETECTED");
        }
        if (presented !== `r${counter}`) return error(401, "INVALID_TOKEN");
        spent.add(presented);
        counter += 1;
        access = `a${counter}`;
        return json(200, tokens());
      }
      case "GET /auth/me":
        if (revoked || headers.authorization !== `Bearer ${access}`) return error(401, "TOKEN_EXPIRED");
        return json(200, user);
      case "POST /auth/logout":
        return json(200, { message: "Successfully logged out" });
      case "POST /auth/register":
        return error(400, "WEAK_PASSWORD", "needs a digit", { field: "password" });
      case "POST /auth/forgot-password":
        return new Response(JSON.stringify({ detail: { code: "RATE_LIMITED", message: "slow down" } }), {
          status: 429,
          headers: { "retry-after": "42" },
        });
      default:
        return error(404, "NOT_FOUND");
    }
  };
  return {
    fetch: fetch as typeof globalThis.fetch,
    calls,
    refreshes: () => calls.filter((c) => c.path === "/auth/refresh").length,
    /** Makes the server's current access token differ from the client's (as after expiry). */
    rotateAccess: () => {
      access = `${access}x`;
    },
  };
}

/** A `localStorage` stand-in shared by several "tabs". */
export function sharedStore() {
  const m = new Map<string, string>();
  return {
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
  };
}

/**
 * Two tabs' copies of one `localStorage`, as Chromium keeps them: each tab reads its own copy at
 * once, and sees the other tab's writes only `lagMs` later.
 */
export function laggyStores(lagMs: number) {
  const copies = [new Map<string, string>(), new Map<string, string>()];
  const view = (me: number) => ({
    getItem: (k: string) => copies[me].get(k) ?? null,
    setItem: (k: string, v: string) => {
      copies[me].set(k, v);
      setTimeout(() => copies[1 - me].set(k, v), lagMs);
    },
    removeItem: (k: string) => {
      copies[me].delete(k);
      setTimeout(() => copies[1 - me].delete(k), lagMs);
    },
  });
  return [view(0), view(1)] as const;
}
