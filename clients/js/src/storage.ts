/**
 * Where the tokens live between calls. Three adapters:
 *
 * - `memoryStorage()`: nothing outlives the page; each tab signs in on its own. Safest against XSS
 *   theft of the refresh token (a script can still act as the user while the page is open).
 * - `localStorageStorage()`: survives reloads and is shared by every tab of the origin; any script
 *   running on the origin can read the refresh token.
 * - `cookieStorage()`: the server keeps the refresh token in its `HttpOnly` cookie
 *   (`TOKEN_TRANSPORT=cookie`), scripts never see it; the short-lived access token stays in memory
 *   and is shared with other tabs over `BroadcastChannel`. Requests carry credentials and the
 *   CSRF header.
 */

export interface StoredTokens {
  /** The bearer token. */
  accessToken: string;
  /** When the access token expires, ms since the epoch. */
  expiresAt: number;
  /** Absent in cookie mode, where it lives in the HttpOnly cookie. */
  refreshToken?: string;
}

export interface TokenStorage {
  /** `body`: the refresh token travels in JSON; `cookie`: in the server's HttpOnly cookie. */
  readonly transport: "body" | "cookie";
  /** Whether other tabs see what `set` writes (then they need no broadcast). */
  readonly shared: boolean;
  get(): StoredTokens | null;
  set(tokens: StoredTokens | null): void;
}

export function memoryStorage(): TokenStorage {
  let tokens: StoredTokens | null = null;
  return {
    transport: "body",
    shared: false,
    get: () => tokens,
    set: (t) => {
      tokens = t;
    },
  };
}

/** Minimal `Storage` shape, so tests can pass a stand-in. */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export function localStorageStorage(key = "fraise-auth", store?: KeyValueStore): TokenStorage {
  const s = store ?? (globalThis as { localStorage?: KeyValueStore }).localStorage;
  if (!s) throw new Error("localStorage is not available here: use memoryStorage() or cookieStorage()");
  return {
    transport: "body",
    shared: true,
    get: () => {
      const raw = s.getItem(key);
      if (raw === null) return null;
      try {
        const v = JSON.parse(raw) as StoredTokens;
        return typeof v.accessToken === "string" && typeof v.expiresAt === "number" ? v : null;
      } catch {
        return null;
      }
    },
    set: (t) => (t === null ? s.removeItem(key) : s.setItem(key, JSON.stringify(t))),
  };
}

export function cookieStorage(): TokenStorage {
  const mem = memoryStorage();
  return { transport: "cookie", shared: false, get: mem.get, set: mem.set };
}

/** The value of cookie `name` in `document.cookie` (the CSRF token in cookie mode). */
export function readCookie(name: string, cookies?: string): string | null {
  const all = cookies ?? (globalThis as { document?: { cookie?: string } }).document?.cookie ?? "";
  for (const part of all.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return null;
}
