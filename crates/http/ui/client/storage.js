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
export function memoryStorage() {
    let tokens = null;
    return {
        transport: "body",
        shared: false,
        get: () => tokens,
        set: (t) => {
            tokens = t;
        },
    };
}
export function localStorageStorage(key = "fraise-auth", store) {
    const s = store ?? globalThis.localStorage;
    if (!s)
        throw new Error("localStorage is not available here: use memoryStorage() or cookieStorage()");
    return {
        transport: "body",
        shared: true,
        get: () => {
            const raw = s.getItem(key);
            if (raw === null)
                return null;
            try {
                const v = JSON.parse(raw);
                return typeof v.accessToken === "string" && typeof v.expiresAt === "number" ? v : null;
            }
            catch {
                return null;
            }
        },
        set: (t) => (t === null ? s.removeItem(key) : s.setItem(key, JSON.stringify(t))),
    };
}
export function cookieStorage() {
    const mem = memoryStorage();
    return { transport: "cookie", shared: false, get: mem.get, set: mem.set };
}
/** The value of cookie `name` in `document.cookie` (the CSRF token in cookie mode). */
export function readCookie(name, cookies) {
    const all = cookies ?? globalThis.document?.cookie ?? "";
    for (const part of all.split(";")) {
        const eq = part.indexOf("=");
        if (eq > 0 && part.slice(0, eq).trim() === name)
            return decodeURIComponent(part.slice(eq + 1).trim());
    }
    return null;
}
