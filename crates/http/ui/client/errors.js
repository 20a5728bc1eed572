/**
 * Errors as typed objects. Every failure of a call is a `FraiseAuthError` whose `code` is the
 * server envelope's `detail.code` (`INVALID_CREDENTIALS`, `TOKEN_THEFT_DETECTED`, ...), or one of
 * the client's own codes: `NETWORK_ERROR` (no response: offline, DNS, CORS refusal),
 * `NOT_SIGNED_IN` (a call that needs a session when there is none), `BAD_RESPONSE` (a response
 * that is not the server's JSON), `MFA_CHALLENGE` (see `login`), `PASSKEYS_UNSUPPORTED` and
 * `PASSKEY_CANCELLED` (the browser cannot, or the user did not, complete a passkey ceremony).
 */
export class FraiseAuthError extends Error {
    constructor(code, message, init = {}) {
        super(message);
        this.name = "FraiseAuthError";
        this.code = code;
        this.status = init.status ?? 0;
        if (init.field !== undefined)
            this.field = init.field;
        if (init.retryAfter !== undefined)
            this.retryAfter = init.retryAfter;
        if (init.requestId !== undefined)
            this.requestId = init.requestId;
        if (init.mfa !== undefined)
            this.mfa = init.mfa;
        if (init.cause !== undefined)
            this.cause = init.cause;
    }
}
/** Whether `e` is a `FraiseAuthError`, optionally with one of `codes`. */
export function isAuthError(e, ...codes) {
    return e instanceof FraiseAuthError && (codes.length === 0 || codes.includes(e.code));
}
/** Builds the error for a non-2xx response from its envelope `{"detail": {code, message, field}}`. */
export async function errorFromResponse(res) {
    const requestId = res.headers.get("x-request-id") ?? undefined;
    const ra = res.headers.get("retry-after");
    const retryAfter = ra !== null && /^\d+$/.test(ra) ? Number(ra) : undefined;
    let body = null;
    try {
        body = await res.json();
    }
    catch {
        // Not JSON (a proxy's error page): the status is all there is.
    }
    const detail = body?.detail;
    if (detail && typeof detail.code === "string") {
        return new FraiseAuthError(detail.code, typeof detail.message === "string" ? detail.message : detail.code, {
            status: res.status,
            field: typeof detail.field === "string" ? detail.field : undefined,
            retryAfter,
            requestId,
        });
    }
    return new FraiseAuthError("BAD_RESPONSE", `HTTP ${res.status} without an error envelope`, {
        status: res.status,
        retryAfter,
        requestId,
    });
}
