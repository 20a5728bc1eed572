/**
 * `FraiseAuth`: one object per auth server, holding the session and calling the API.
 *
 * Single-flight refresh. A refresh token is spent when used: presenting it twice (outside the
 * server's grace window) is treated as theft and ends the user's sessions. So:
 * 1. in one tab, concurrent calls that find the access token expired share one pending refresh
 *    (`this.inflight`);
 * 2. across tabs, the refresh runs under a Web Lock named after the server; the tab that gets the
 *    lock second first re-reads the storage and, if another tab already refreshed (the access token
 *    changed and is fresh), uses that instead of spending the refresh token again. If its copy of
 *    `localStorage` has not heard of that refresh yet, the note the first tab left in the lock
 *    manager ("this token is spent", see `lock.ts`) tells it to wait for the new tokens. In cookie mode
 *    the new access token reaches the other tabs over `BroadcastChannel`; if it has not arrived
 *    yet, the second refresh presents the cookie the first one just rotated, which is a legitimate
 *    rotation, never a replay.
 */
import { FraiseAuthError, errorFromResponse, isAuthError } from "./errors.js";
import { webLocks } from "./lock.js";
import { createCredential, getAssertion } from "./passkeys.js";
import { memoryStorage, readCookie } from "./storage.js";
/** How long a "token spent" note stays up, and how long a tab waits for the tokens it announces. */
const SPENT_NOTE_MS = 30000;
const NOTE_WAIT_MS = 3000;
/** Codes after which the stored session is useless: it is forgotten. */
const SESSION_OVER = ["INVALID_TOKEN", "TOKEN_EXPIRED", "TOKEN_THEFT_DETECTED", "ACCOUNT_DISABLED", "UNAUTHORIZED"];
export class FraiseAuth {
    constructor(opts = {}) {
        this.channel = null;
        this.inflight = null;
        this.listeners = new Set();
        const prefix = opts.prefix ?? "/auth";
        this.base = (opts.baseUrl ?? "").replace(/\/+$/, "") + prefix;
        this.storage = opts.storage ?? memoryStorage();
        this.tenant = opts.tenant;
        this.leewayMs = (opts.refreshLeewaySeconds ?? 30) * 1000;
        this.lock = opts.lock === false ? null : (opts.lock ?? webLocks());
        this.lockName = `fraise-auth refresh ${this.base}`;
        this.csrf = opts.csrfToken ?? (() => readCookie("csrf_token"));
        const f = opts.fetch ?? globalThis.fetch;
        this.fetchImpl = (input, init) => f(input, init);
        this.now = opts.now ?? Date.now;
        const wantBroadcast = opts.broadcast ?? (!this.storage.shared && this.storage.transport === "cookie");
        if (wantBroadcast && typeof BroadcastChannel === "function") {
            this.channel = new BroadcastChannel(this.lockName);
            this.channel.onmessage = (ev) => {
                this.storage.set(ev.data.tokens);
                this.emit();
            };
        }
    }
    /** Calls `listener(signedIn)` whenever tokens are stored or forgotten; returns the unsubscribe. */
    onChange(listener) {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
    }
    /** Whether tokens are stored (in cookie mode after a reload: call `restore()` first). */
    isSignedIn() {
        return this.storage.get() !== null;
    }
    /** Cookie mode after a page load: gets an access token from the refresh cookie, if any. */
    async restore() {
        if (this.fresh(this.storage.get()))
            return true;
        // The server sets `csrf_token` beside the refresh cookie, with the same lifetime: without it
        // there is no session to restore, and no request to make.
        if (this.storage.transport === "cookie" && !this.csrf())
            return false;
        try {
            await this.refreshFrom(this.storage.get());
            return true;
        }
        catch (e) {
            if (isAuthError(e, "NOT_SIGNED_IN", ...SESSION_OVER))
                return false;
            throw e;
        }
    }
    async register(body) {
        return this.signIn("/register", body);
    }
    /**
     * Signs in. For an account with a second factor this rejects with a `FraiseAuthError` whose
     * code is `MFA_CHALLENGE` and whose `mfa` holds the token for `verifyMfa` (no session yet).
     */
    async login(body) {
        return this.signIn("/login", body);
    }
    /** The second step of a login: a TOTP code or a recovery code for the challenge's token. */
    async verifyMfa(mfaToken, code) {
        return this.signIn("/mfa/verify", { mfa_token: mfaToken, code });
    }
    /** Starts TOTP enrollment: the secret, its `otpauth://` URI and a QR code (SVG text). */
    setupTotp() {
        return this.authed("POST", "/mfa/totp/setup", {});
    }
    /** Turns TOTP on with the first code; resolves to the ten recovery codes (shown once). */
    async confirmTotp(code) {
        return (await this.authed("POST", "/mfa/totp/confirm", { code })).recovery_codes;
    }
    /** Creates a passkey on this device for the signed-in user (the browser asks the user). */
    async registerPasskey(name) {
        const start = await this.authed("POST", "/webauthn/register/start", {});
        const credential = await createCredential(start);
        const body = { ceremony_id: start.ceremony_id, credential };
        if (name)
            body.name = name;
        return this.authed("POST", "/webauthn/register/finish", body);
    }
    async passkeys() {
        return (await this.authed("GET", "/webauthn/credentials")).credentials;
    }
    async removePasskey(id) {
        await this.authed("DELETE", `/webauthn/credentials/${encodeURIComponent(id)}`);
    }
    /**
     * Signs in with a passkey: with `mfaToken` as the second step of a login that answered
     * `MFA_CHALLENGE`, without it passwordless (when the server allows it).
     */
    async signInWithPasskey(mfaToken) {
        const hint = mfaToken ? { mfa_token: mfaToken } : {};
        const start = await this.send("POST", "/webauthn/login/start", hint);
        const credential = await getAssertion(start);
        return this.signIn("/webauthn/login/finish", { ...hint, ceremony_id: start.ceremony_id, credential });
    }
    /** Turns TOTP off, given a current code (or a recovery code) or the password. */
    async disableTotp(proof) {
        await this.authed("DELETE", "/mfa/totp", proof);
    }
    /** Ends this session (`all`: every session of the user) and forgets the tokens, whatever happens. */
    async logout(opts = {}) {
        const t = this.storage.get();
        const body = {};
        if (t?.refreshToken)
            body.refresh_token = t.refreshToken;
        if (opts.all)
            body.all = true;
        try {
            await this.send("POST", "/logout", body, this.fresh(t) ? t?.accessToken : undefined);
        }
        finally {
            this.store(null);
        }
    }
    /** Rotates the tokens now (single-flight, like the automatic refresh). */
    async refresh() {
        await this.refreshFrom(this.storage.get(), true);
    }
    /** A valid access token, refreshed first if needed: for calling your own APIs. */
    async accessToken() {
        return (await this.validTokens()).accessToken;
    }
    me() {
        return this.authed("GET", "/me");
    }
    updateMe(body) {
        return this.authed("PATCH", "/me", body);
    }
    async sessions() {
        return (await this.authed("GET", "/sessions")).sessions;
    }
    async revokeSession(id) {
        await this.authed("DELETE", `/sessions/${encodeURIComponent(id)}`);
    }
    async revokeOtherSessions() {
        return (await this.authed("DELETE", "/sessions")).revoked_count;
    }
    async changePassword(body) {
        await this.authed("POST", "/change-password", body);
    }
    async forgotPassword(email) {
        await this.send("POST", "/forgot-password", { email });
    }
    async resetPassword(token, newPassword) {
        await this.send("POST", "/reset-password", { token, new_password: newPassword });
    }
    /** Mails a verification link: to the signed-in user, or to `email` when given. */
    async requestEmailVerification(email) {
        if (email !== undefined)
            await this.send("POST", "/verify-email/request", { email });
        else
            await this.authed("POST", "/verify-email/request", {});
    }
    verifyEmail(token) {
        return this.send("POST", "/verify-email", { token });
    }
    // ---- internals
    async signIn(path, body) {
        const res = await this.send("POST", path, body);
        if ("mfa_required" in res && res.mfa_required) {
            throw new FraiseAuthError("MFA_CHALLENGE", "a second factor is needed to finish signing in", {
                status: 200,
                mfa: { token: res.mfa_token, methods: res.methods, expiresAt: Date.parse(res.expires_at) },
            });
        }
        const done = res;
        this.store(this.tokensOf(done));
        return done.user;
    }
    /** A bearer call; refreshes first when the token is (nearly) expired, and once more on a 401. */
    async authed(method, path, body) {
        const tokens = await this.validTokens();
        try {
            return await this.send(method, path, body, tokens.accessToken);
        }
        catch (e) {
            // Clock skew, or keys rotated: the server refused a token we thought valid. Once.
            if (!isAuthError(e, "TOKEN_EXPIRED", "INVALID_TOKEN"))
                throw e;
            const again = await this.refreshFrom(tokens, true);
            return this.send(method, path, body, again.accessToken);
        }
    }
    async validTokens() {
        const t = this.storage.get();
        if (t && this.fresh(t))
            return t;
        return this.refreshFrom(t);
    }
    fresh(t) {
        return t !== null && t.expiresAt - this.leewayMs > this.now();
    }
    /**
     * The single flight. `seen` is what the caller found in storage when it decided to refresh.
     * `force`: refresh even if the stored token is fresh (an explicit `refresh()`), unless another
     * caller replaced `seen` meanwhile.
     */
    refreshFrom(seen, force = false) {
        if (this.inflight)
            return this.inflight;
        const run = async () => {
            const current = this.storage.get();
            const replaced = current !== null && current.accessToken !== seen?.accessToken;
            if (this.fresh(current) && (replaced || !force))
                return current;
            const spent = current?.refreshToken && this.storage.shared ? this.spentNote(current.refreshToken) : null;
            if (spent && this.lock && (await this.lock.noted(spent))) {
                const next = await this.nextTokens(current?.refreshToken);
                if (next)
                    return next;
            }
            const body = {};
            if (this.storage.transport === "body") {
                if (!current?.refreshToken)
                    throw new FraiseAuthError("NOT_SIGNED_IN", "Not signed in");
                body.refresh_token = current.refreshToken;
            }
            try {
                const res = await this.send("POST", "/refresh", body);
                const tokens = this.tokensOf(res);
                this.store(tokens);
                // Before the lock is released: other tabs must learn that this token is spent.
                if (spent && this.lock)
                    await this.lock.note(spent, SPENT_NOTE_MS);
                return tokens;
            }
            catch (e) {
                if (isAuthError(e, ...SESSION_OVER))
                    this.store(null);
                // Cookie mode and no refresh cookie: the server asks for the field.
                if (isAuthError(e, "VALIDATION_ERROR") && e.field === "refresh_token") {
                    throw new FraiseAuthError("NOT_SIGNED_IN", "Not signed in", { status: e.status, cause: e });
                }
                throw e;
            }
        };
        const flight = (this.lock ? this.lock.run(this.lockName, run) : run()).finally(() => {
            this.inflight = null;
        });
        this.inflight = flight;
        return flight;
    }
    /** The name of the note saying `refreshToken` was spent (a hash: lock names are listable). */
    spentNote(refreshToken) {
        let h = 0x811c9dc5;
        for (let i = 0; i < refreshToken.length; i++)
            h = Math.imul(h ^ refreshToken.charCodeAt(i), 0x01000193) >>> 0;
        return `${this.lockName} spent ${h.toString(16)}`;
    }
    /** Waits (bounded) until the shared storage shows tokens other than those with `spent`. */
    async nextTokens(spent) {
        const deadline = this.now() + NOTE_WAIT_MS;
        for (;;) {
            const t = this.storage.get();
            if (t === null)
                throw new FraiseAuthError("NOT_SIGNED_IN", "Signed out in another tab");
            if (t.refreshToken !== spent)
                return t;
            if (this.now() > deadline)
                return null;
            await new Promise((r) => setTimeout(r, 10));
        }
    }
    tokensOf(res) {
        const expiresAt = Date.parse(res.expires_at);
        if (typeof res.access_token !== "string" || Number.isNaN(expiresAt)) {
            throw new FraiseAuthError("BAD_RESPONSE", "token response without access_token or expires_at");
        }
        const t = { accessToken: res.access_token, expiresAt };
        if (this.storage.transport === "body") {
            if (typeof res.refresh_token !== "string") {
                throw new FraiseAuthError("BAD_RESPONSE", "no refresh_token in the response: the server uses TOKEN_TRANSPORT=cookie, use cookieStorage()");
            }
            t.refreshToken = res.refresh_token;
        }
        return t;
    }
    store(tokens) {
        this.storage.set(tokens);
        this.channel?.postMessage({ tokens });
        this.emit();
    }
    emit() {
        const signedIn = this.storage.get() !== null;
        for (const l of this.listeners)
            l(signedIn);
    }
    async send(method, path, body, bearer) {
        const headers = { accept: "application/json" };
        if (body !== undefined)
            headers["content-type"] = "application/json";
        if (bearer)
            headers.authorization = `Bearer ${bearer}`;
        if (this.tenant)
            headers["x-tenant-id"] = this.tenant;
        const cookieMode = this.storage.transport === "cookie";
        if (cookieMode && method !== "GET") {
            const csrf = this.csrf();
            if (csrf)
                headers["x-csrf-token"] = csrf;
        }
        let res;
        try {
            res = await this.fetchImpl(this.base + path, {
                method,
                headers,
                body: body === undefined ? undefined : JSON.stringify(body),
                // Cookie mode needs the refresh cookie sent (and accepted) cross-origin; otherwise no
                // ambient credential is ever sent.
                credentials: cookieMode ? "include" : "omit",
                cache: "no-store",
            });
        }
        catch (cause) {
            throw new FraiseAuthError("NETWORK_ERROR", "the auth server could not be reached (network or CORS)", {
                cause,
            });
        }
        if (!res.ok)
            throw await errorFromResponse(res);
        try {
            return (await res.json());
        }
        catch (cause) {
            throw new FraiseAuthError("BAD_RESPONSE", "the response is not JSON", { status: res.status, cause });
        }
    }
}
