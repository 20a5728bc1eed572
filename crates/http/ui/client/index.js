/**
 * `@fraise-auth/client`: a browser client for fraise-auth. No runtime dependencies.
 *
 * ```ts
 * import { FraiseAuth, localStorageStorage } from "@fraise-auth/client";
 * const auth = new FraiseAuth({ baseUrl: "https://auth.example.com", storage: localStorageStorage() });
 * await auth.login({ email, password });
 * const me = await auth.me(); // refreshes first when the access token has expired
 * ```
 */
export { FraiseAuth } from "./client.js";
export { fromBase64Url, toBase64Url } from "./passkeys.js";
export { FraiseAuthError, isAuthError, } from "./errors.js";
export { localLock, webLocks } from "./lock.js";
export { cookieStorage, localStorageStorage, memoryStorage, readCookie, } from "./storage.js";
