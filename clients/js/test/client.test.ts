import { describe, expect, it } from "vitest";
import {
  FraiseAuth,
  FraiseAuthError,
  cookieStorage,
  isAuthError,
  localLock,
  localStorageStorage,
  memoryStorage,
  readCookie,
} from "../src/index.js";
import { fakeServer, laggyStores, sharedStore } from "./fake-server.js";

const creds = { email: "a@example.com", password: "TestPass123!" };

/** Marks the stored access token as expired, as if 15 minutes had passed. */
function expire(storage: ReturnType<typeof memoryStorage>) {
  const t = storage.get();
  if (t) storage.set({ ...t, expiresAt: Date.now() - 1000 });
}

describe("single-flight refresh", () => {
  it("ten parallel calls with an expired token share one refresh", async () => {
    const server = fakeServer();
    const storage = memoryStorage();
    const auth = new FraiseAuth({ fetch: server.fetch, storage, lock: false });
    await auth.login(creds);
    expire(storage);
    server.rotateAccess();

    const users = await Promise.all(Array.from({ length: 10 }, () => auth.me()));

    expect(users.map((u) => u.id)).toEqual(Array(10).fill("u1"));
    expect(server.refreshes()).toBe(1);
    expect(storage.get()?.refreshToken).toBe("r2");
  });

  it("two tabs sharing storage and a lock refresh once; the second reuses the first's tokens", async () => {
    const server = fakeServer();
    const store = sharedStore();
    const lock = localLock();
    const tabA = new FraiseAuth({ fetch: server.fetch, storage: localStorageStorage("k", store), lock });
    const tabB = new FraiseAuth({ fetch: server.fetch, storage: localStorageStorage("k", store), lock });
    await tabA.login(creds);
    const s = localStorageStorage("k", store);
    expire(s);
    server.rotateAccess();

    const [a, b] = await Promise.all([tabA.me(), tabB.me()]);

    expect([a.id, b.id]).toEqual(["u1", "u1"]);
    expect(server.refreshes()).toBe(1);
  });

  it("without the cross-tab lock the same two tabs replay the token and trip theft detection", async () => {
    // The control for the test above: it shows the fake server does detect a replay.
    const server = fakeServer();
    const store = sharedStore();
    const tabA = new FraiseAuth({ fetch: server.fetch, storage: localStorageStorage("k", store), lock: false });
    const tabB = new FraiseAuth({ fetch: server.fetch, storage: localStorageStorage("k", store), lock: false });
    await tabA.login(creds);
    expire(localStorageStorage("k", store));
    server.rotateAccess();

    const results = await Promise.allSettled([tabA.me(), tabB.me()]);

    const codes = results.map((r) => (r.status === "rejected" ? (r.reason as FraiseAuthError).code : "ok"));
    expect(codes).toContain("TOKEN_THEFT_DETECTED");
    expect(server.refreshes()).toBe(2);
  });

  it("a tab whose copy of localStorage lags behind waits for the new tokens instead of replaying", async () => {
    const run = async (lock: ReturnType<typeof localLock>) => {
      const server = fakeServer();
      const [storeA, storeB] = laggyStores(50);
      const tabA = new FraiseAuth({ fetch: server.fetch, storage: localStorageStorage("k", storeA), lock });
      const tabB = new FraiseAuth({ fetch: server.fetch, storage: localStorageStorage("k", storeB), lock });
      await tabA.login(creds);
      await new Promise((r) => setTimeout(r, 60)); // B has the session too
      for (const s of [storeA, storeB]) expire(localStorageStorage("k", s));
      server.rotateAccess();
      const results = await Promise.allSettled([tabA.me(), tabB.me()]);
      return {
        refreshes: server.refreshes(),
        codes: results.map((r) => (r.status === "rejected" ? (r.reason as FraiseAuthError).code : "ok")),
      };
    };

    expect(await run(localLock())).toEqual({ refreshes: 1, codes: ["ok", "ok"] });
    // Control: the same lock without its notes; B reads its stale copy and replays the token.
    const noNotes = { ...localLock(), note: async () => undefined, noted: async () => false };
    const control = await run(noNotes);
    expect(control.codes).toContain("TOKEN_THEFT_DETECTED");
  });

  it("a 401 TOKEN_EXPIRED on a token thought fresh refreshes once and retries", async () => {
    const server = fakeServer();
    const auth = new FraiseAuth({ fetch: server.fetch, lock: false });
    await auth.login(creds);
    server.rotateAccess();

    await expect(auth.me()).resolves.toMatchObject({ id: "u1" });
    expect(server.refreshes()).toBe(1);
    expect(server.calls.filter((c) => c.path === "/auth/me")).toHaveLength(2);
  });

  it("a refused refresh forgets the session and tells listeners", async () => {
    const server = fakeServer();
    const storage = memoryStorage();
    const auth = new FraiseAuth({ fetch: server.fetch, storage, lock: false });
    await auth.login(creds);
    storage.set({ accessToken: "old", expiresAt: 0, refreshToken: "bogus" });
    const seen: boolean[] = [];
    auth.onChange((s) => seen.push(s));

    const err = await auth.me().catch((e: unknown) => e);

    expect(isAuthError(err, "INVALID_TOKEN")).toBe(true);
    expect(storage.get()).toBeNull();
    expect(seen).toEqual([false]);
  });

  it("without a session a bearer call fails with NOT_SIGNED_IN and sends nothing", async () => {
    const server = fakeServer();
    const auth = new FraiseAuth({ fetch: server.fetch, lock: false });
    await expect(auth.me()).rejects.toMatchObject({ code: "NOT_SIGNED_IN" });
    expect(server.calls).toHaveLength(0);
  });
});

describe("second factor", () => {
  it("login answers MFA_CHALLENGE with the token; verifyMfa finishes and stores the session", async () => {
    const server = fakeServer({ mfa: true });
    const auth = new FraiseAuth({ fetch: server.fetch, lock: false });
    const err = await auth.login(creds).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MFA_CHALLENGE", mfa: { token: "m1", methods: ["totp", "recovery_code"] } });
    expect(auth.isSignedIn()).toBe(false);
    await expect(auth.verifyMfa("m1", "000000")).rejects.toMatchObject({ code: "INVALID_MFA_CODE", status: 401 });
    expect(auth.isSignedIn()).toBe(false);
    const user = await auth.verifyMfa((err as FraiseAuthError).mfa?.token ?? "", "123456");
    expect(user.email).toBe("a@example.com");
    expect(auth.isSignedIn()).toBe(true);
    await expect(auth.me()).resolves.toMatchObject({ email: "a@example.com" });
  });
});

describe("errors", () => {
  it("carry the envelope's code, message, field and request id", async () => {
    const auth = new FraiseAuth({ fetch: fakeServer().fetch, lock: false });
    const err = await auth.register({ email: "a@example.com", password: "weak" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FraiseAuthError);
    expect(err).toMatchObject({ code: "WEAK_PASSWORD", status: 400, field: "password", requestId: "req-1" });
    expect((err as Error).message).toBe("needs a digit");
  });

  it("carry Retry-After", async () => {
    const auth = new FraiseAuth({ fetch: fakeServer().fetch, lock: false });
    await expect(auth.forgotPassword("a@example.com")).rejects.toMatchObject({ code: "RATE_LIMITED", retryAfter: 42 });
  });

  it("a failed fetch (offline, CORS) is NETWORK_ERROR; a non-envelope body is BAD_RESPONSE", async () => {
    const offline = new FraiseAuth({ fetch: () => Promise.reject(new TypeError("Failed to fetch")), lock: false });
    await expect(offline.forgotPassword("x@example.com")).rejects.toMatchObject({ code: "NETWORK_ERROR", status: 0 });
    const proxy = new FraiseAuth({ fetch: async () => new Response("<html>bad gateway</html>", { status: 502 }), lock: false });
    await expect(proxy.forgotPassword("x@example.com")).rejects.toMatchObject({ code: "BAD_RESPONSE", status: 502 });
  });
});

describe("cookie mode", () => {
  it("sends credentials and the CSRF header, never a refresh token in the body", async () => {
    const server = fakeServer({ transport: "cookie" });
    const storage = cookieStorage();
    const auth = new FraiseAuth({
      fetch: server.fetch,
      storage,
      lock: false,
      broadcast: false,
      csrfToken: () => "csrf-1",
    });
    await auth.login(creds);
    expire(storage);
    server.rotateAccess();
    await auth.me();

    const refresh = server.calls.find((c) => c.path === "/auth/refresh");
    expect(refresh?.body).toEqual({});
    expect(refresh?.headers["x-csrf-token"]).toBe("csrf-1");
    expect(refresh?.credentials).toBe("include");
    expect(server.calls.find((c) => c.path === "/auth/me")?.headers["x-csrf-token"]).toBeUndefined();
    expect(storage.get()?.refreshToken).toBeUndefined();
  });

  it("restore() after a reload gets an access token from the cookie, or says false", async () => {
    const server = fakeServer({ transport: "cookie" });
    const auth = new FraiseAuth({ fetch: server.fetch, storage: cookieStorage(), lock: false, broadcast: false, csrfToken: () => "c" });
    await expect(auth.restore()).resolves.toBe(true);
    expect(auth.isSignedIn()).toBe(true);
    const refused = new FraiseAuth({
      fetch: async () => new Response(JSON.stringify({ detail: { code: "INVALID_TOKEN", message: "x" } }), { status: 401 }),
      storage: cookieStorage(),
      lock: false,
      broadcast: false,
      csrfToken: () => "c",
    });
    await expect(refused.restore()).resolves.toBe(false);
  });

  it("restore() without the CSRF cookie makes no request; a missing refresh cookie is NOT_SIGNED_IN", async () => {
    const server = fakeServer({ transport: "cookie" });
    const auth = new FraiseAuth({ fetch: server.fetch, storage: cookieStorage(), lock: false, broadcast: false, csrfToken: () => null });
    await expect(auth.restore()).resolves.toBe(false);
    expect(server.calls).toHaveLength(0);
    const noCookie = new FraiseAuth({
      fetch: async () =>
        new Response(JSON.stringify({ detail: { code: "VALIDATION_ERROR", message: "required", field: "refresh_token" } }), { status: 400 }),
      storage: cookieStorage(),
      lock: false,
      broadcast: false,
    });
    await expect(noCookie.me()).rejects.toMatchObject({ code: "NOT_SIGNED_IN", status: 400 });
  });

  it("body storage against a cookie-transport server says which storage to use", async () => {
    const auth = new FraiseAuth({ fetch: fakeServer({ transport: "cookie" }).fetch, lock: false });
    await expect(auth.login(creds)).rejects.toMatchObject({ code: "BAD_RESPONSE", message: expect.stringContaining("cookieStorage") });
  });
});

describe("storage and logout", () => {
  it("localStorage survives a new client and ignores garbage", () => {
    const store = sharedStore();
    localStorageStorage("k", store).set({ accessToken: "a", expiresAt: 5, refreshToken: "r" });
    expect(localStorageStorage("k", store).get()).toEqual({ accessToken: "a", expiresAt: 5, refreshToken: "r" });
    store.setItem("k", "{not json");
    expect(localStorageStorage("k", store).get()).toBeNull();
  });

  it("readCookie finds one cookie among several", () => {
    expect(readCookie("csrf_token", "a=1; csrf_token=abc%2Bd; b=2")).toBe("abc+d");
    expect(readCookie("csrf", "csrf_token=abc")).toBeNull();
  });

  it("logout forgets the tokens even when the server cannot be reached", async () => {
    const storage = memoryStorage();
    storage.set({ accessToken: "a", expiresAt: Date.now() + 60_000, refreshToken: "r" });
    const auth = new FraiseAuth({ fetch: () => Promise.reject(new TypeError("offline")), storage, lock: false });
    await expect(auth.logout()).rejects.toMatchObject({ code: "NETWORK_ERROR" });
    expect(storage.get()).toBeNull();
  });

  it("logout sends the refresh token and the bearer", async () => {
    const server = fakeServer();
    const auth = new FraiseAuth({ fetch: server.fetch, lock: false });
    await auth.login(creds);
    await auth.logout({ all: true });
    const call = server.calls.find((c) => c.path === "/auth/logout");
    expect(call?.body).toEqual({ refresh_token: "r1", all: true });
    expect(call?.headers.authorization).toBe("Bearer a1");
    expect(auth.isSignedIn()).toBe(false);
  });
});

describe("passkey glue", () => {
  it("base64url round-trips every byte value, without padding", async () => {
    const { fromBase64Url, toBase64Url } = await import("../src/index.js");
    const all = new Uint8Array(256).map((_, i) => i);
    const text = toBase64Url(all);
    expect(text).not.toMatch(/[+/=]/);
    expect(Array.from(fromBase64Url(text))).toEqual(Array.from(all));
    expect(toBase64Url(new Uint8Array([0xfb, 0xff]))).toBe("-_8");
    expect(Array.from(fromBase64Url("-_8"))).toEqual([0xfb, 0xff]);
  });

  it("without WebAuthn in the environment a passkey sign-in says PASSKEYS_UNSUPPORTED", async () => {
    const server = fakeServer();
    const original = server.fetch;
    const fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
      if (String(input).endsWith("/webauthn/login/start")) {
        return new Response(JSON.stringify({ ceremony_id: "c1", options: { publicKey: { challenge: "AA" } } }), {
          status: 200,
          headers: { "content-type": "application/json" },
        });
      }
      return original(input, init);
    }) as typeof globalThis.fetch;
    const auth = new FraiseAuth({ fetch, lock: false });
    await expect(auth.signInWithPasskey()).rejects.toMatchObject({ code: "PASSKEYS_UNSUPPORTED" });
  });
});
