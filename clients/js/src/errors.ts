/**
 * Errors as typed objects. Every failure of a call is a `FraiseAuthError` whose `code` is the
 * server envelope's `detail.code` (`INVALID_CREDENTIALS`, `TOKEN_THEFT_DETECTED`, ...), or one of
 * the client's own codes: `NETWORK_ERROR` (no response: offline, DNS, CORS refusal),
 * `NOT_SIGNED_IN` (a call that needs a session when there is none), `BAD_RESPONSE` (a response
 * that is not the server's JSON), `MFA_CHALLENGE` (see `login`), `PASSKEYS_UNSUPPORTED` and
 * `PASSKEY_CANCELLED` (the browser cannot, or the user did not, complete a passkey ceremony).
 */

/**
 * Codes the client itself produces (no server response carries them). `MFA_CHALLENGE`: the
 * password was right and the account has a second factor; the error's `mfa` says how to finish
 * (`verifyMfa`).
 */
export type ClientErrorCode =
  | "NETWORK_ERROR"
  | "NOT_SIGNED_IN"
  | "BAD_RESPONSE"
  | "MFA_CHALLENGE"
  | "PASSKEYS_UNSUPPORTED"
  | "PASSKEY_CANCELLED";

/** The second step a login asks for: pass `token` to `verifyMfa` with a code. */
export interface MfaChallenge {
  token: string;
  /** `totp`, `recovery_code`, `webauthn`. */
  methods: string[];
  /** Milliseconds since the epoch; the token also dies after five wrong codes. */
  expiresAt: number;
}

/** Codes the server documents (API.md); `string` keeps newer server codes usable. */
export type ServerErrorCode =
  | "VALIDATION_ERROR"
  | "WEAK_PASSWORD"
  | "EMAIL_ALREADY_EXISTS"
  | "INVALID_CREDENTIALS"
  | "ACCOUNT_LOCKED"
  | "ACCOUNT_DISABLED"
  | "EMAIL_NOT_VERIFIED"
  | "RATE_LIMITED"
  | "UNAUTHORIZED"
  | "INVALID_TOKEN"
  | "TOKEN_EXPIRED"
  | "TOKEN_THEFT_DETECTED"
  | "INVALID_RESET_TOKEN"
  | "SESSION_NOT_FOUND"
  | "CANNOT_REVOKE_CURRENT_SESSION"
  | "CSRF_FAILED"
  | "TENANT_NOT_FOUND"
  | "MFA_REQUIRED"
  | "INVALID_MFA_CODE"
  | "MFA_TOKEN_EXPIRED"
  | "PASSKEYS_DISABLED"
  | "CREDENTIAL_NOT_FOUND"
  | "SERVICE_UNAVAILABLE"
  | "INTERNAL_ERROR";

export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

export class FraiseAuthError extends Error {
  readonly code: ErrorCode;
  /** HTTP status; 0 when no response arrived. */
  readonly status: number;
  /** The request field the error is about (`VALIDATION_ERROR`, `WEAK_PASSWORD`). */
  readonly field?: string;
  /** Seconds to wait, from `Retry-After` (429, 423, 503). */
  readonly retryAfter?: number;
  /** The server's `X-Request-Id`, to quote in a bug report. */
  readonly requestId?: string;
  /** With `MFA_CHALLENGE`: the second step to complete. */
  readonly mfa?: MfaChallenge;

  constructor(
    code: ErrorCode,
    message: string,
    init: {
      status?: number;
      field?: string;
      retryAfter?: number;
      requestId?: string;
      cause?: unknown;
      mfa?: MfaChallenge;
    } = {},
  ) {
    super(message);
    this.name = "FraiseAuthError";
    this.code = code;
    this.status = init.status ?? 0;
    if (init.field !== undefined) this.field = init.field;
    if (init.retryAfter !== undefined) this.retryAfter = init.retryAfter;
    if (init.requestId !== undefined) this.requestId = init.requestId;
    if (init.mfa !== undefined) this.mfa = init.mfa;
    if (init.cause !== undefined) (this as { cause?: unknown }).cause = init.cause;
  }
}

/** Whether `e` is a `FraiseAuthError`, optionally with one of `codes`. */
export function isAuthError(e: unknown, ...codes: ErrorCode[]): e is FraiseAuthError {
  return e instanceof FraiseAuthError && (codes.length === 0 || codes.includes(e.code));
}

/** Builds the error for a non-2xx response from its envelope `{"detail": {code, message, field}}`. */
export async function errorFromResponse(res: Response): Promise<FraiseAuthError> {
  const requestId = res.headers.get("x-request-id") ?? undefined;
  const ra = res.headers.get("retry-after");
  const retryAfter = ra !== null && /^\d+$/.test(ra) ? Number(ra) : undefined;
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON (a proxy's error page): the status is all there is.
  }
  const detail = (body as { detail?: { code?: unknown; message?: unknown; field?: unknown } } | null)?.detail;
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
