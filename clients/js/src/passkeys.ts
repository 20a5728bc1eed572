/**
 * WebAuthn glue: the server sends creation/request options as JSON with binary members in
 * base64url (webauthn-rs's format), the browser wants `ArrayBuffer`s, and the answer goes back
 * as JSON with base64url again. No dependency: `navigator.credentials` does the ceremony.
 */
import { FraiseAuthError } from "./errors.js";

export interface CeremonyStart {
  ceremony_id: string;
  options: { publicKey: Record<string, unknown> };
}

type Json = Record<string, unknown>;

export function toBase64Url(buf: ArrayBuffer | ArrayBufferView): string {
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64Url(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function ids(list: unknown): { id: Uint8Array<ArrayBuffer> }[] {
  return (Array.isArray(list) ? (list as Json[]) : []).map((c) => ({ ...c, id: fromBase64Url(String(c.id)) }));
}

function credentials(): CredentialsContainer {
  if (typeof navigator === "undefined" || !navigator.credentials || typeof PublicKeyCredential === "undefined") {
    throw new FraiseAuthError("PASSKEYS_UNSUPPORTED", "this browser cannot use passkeys");
  }
  return navigator.credentials;
}

/** Runs `navigator.credentials.create` with the server's options; the JSON to send back. */
export async function createCredential(start: CeremonyStart): Promise<Json> {
  const pk = start.options.publicKey;
  const user = pk.user as Json;
  const created = (await credentials().create({
    publicKey: {
      ...pk,
      challenge: fromBase64Url(String(pk.challenge)),
      user: { ...user, id: fromBase64Url(String(user.id)) },
      excludeCredentials: ids(pk.excludeCredentials),
    } as unknown as PublicKeyCredentialCreationOptions,
  })) as PublicKeyCredential | null;
  if (!created) throw new FraiseAuthError("PASSKEY_CANCELLED", "no passkey was created");
  const response = created.response as AuthenticatorAttestationResponse;
  return {
    id: created.id,
    rawId: toBase64Url(created.rawId),
    type: created.type,
    response: {
      attestationObject: toBase64Url(response.attestationObject),
      clientDataJSON: toBase64Url(response.clientDataJSON),
    },
    clientExtensionResults: created.getClientExtensionResults(),
  };
}

/** Runs `navigator.credentials.get` with the server's options; the JSON to send back. */
export async function getAssertion(start: CeremonyStart): Promise<Json> {
  const pk = start.options.publicKey;
  const got = (await credentials().get({
    publicKey: {
      ...pk,
      challenge: fromBase64Url(String(pk.challenge)),
      allowCredentials: ids(pk.allowCredentials),
    } as unknown as PublicKeyCredentialRequestOptions,
  })) as PublicKeyCredential | null;
  if (!got) throw new FraiseAuthError("PASSKEY_CANCELLED", "no passkey was used");
  const response = got.response as AuthenticatorAssertionResponse;
  return {
    id: got.id,
    rawId: toBase64Url(got.rawId),
    type: got.type,
    response: {
      authenticatorData: toBase64Url(response.authenticatorData),
      clientDataJSON: toBase64Url(response.clientDataJSON),
      signature: toBase64Url(response.signature),
      userHandle: response.userHandle ? toBase64Url(response.userHandle) : null,
    },
    clientExtensionResults: got.getClientExtensionResults(),
  };
}
