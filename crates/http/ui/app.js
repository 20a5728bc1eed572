// The hosted account page. Plain ES module, no inline script: the page's CSP is `script-src 'self'`.
// It uses the same client as any other frontend (./client/, built by tsc from clients/js).
import { FraiseAuth, cookieStorage, isAuthError, localStorageStorage } from "./client/index.js";

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute("content") ?? "";
const transport = meta("fraise-auth-transport");
const STORAGE_KEY = "fraise-auth-ui";
// With TOKEN_TRANSPORT=json the refresh token must live where the page can read it: localStorage,
// so a reload or a second tab stays signed in. Otherwise the HttpOnly cookie holds it.
const auth = new FraiseAuth({
  prefix: meta("fraise-auth-prefix") || "/auth",
  storage: transport === "json" ? localStorageStorage(STORAGE_KEY) : cookieStorage(),
});
// For the browser console and the end-to-end tests; any script of this origin could build one.
globalThis.fraiseAuth = auth;

const $ = (id) => document.getElementById(id);
const SESSION_OVER = ["NOT_SIGNED_IN", "INVALID_TOKEN", "TOKEN_EXPIRED", "TOKEN_THEFT_DETECTED", "UNAUTHORIZED"];
const page = () => location.pathname.split("/").pop();
const linkToken = new URL(location.href).searchParams.get("token");

function message(err) {
  if (!isAuthError(err)) return "Something went wrong. Please try again.";
  switch (err.code) {
    case "INVALID_CREDENTIALS":
      return "Wrong email or password.";
    case "EMAIL_ALREADY_EXISTS":
      return "An account with this email already exists. Sign in instead?";
    case "RATE_LIMITED":
    case "ACCOUNT_LOCKED":
      return `Too many attempts. Try again in ${err.retryAfter ?? 60} seconds.`;
    case "NETWORK_ERROR":
      return "The server could not be reached. Check your connection and try again.";
    case "PASSKEYS_DISABLED":
      return "Passkeys are not enabled on this server.";
    case "PASSKEYS_UNSUPPORTED":
      return "This browser cannot use passkeys.";
    case "PASSKEY_CANCELLED":
      return "No passkey was used.";
    case "INVALID_MFA_CODE":
      return "That code is not right. Check that your phone's clock is correct and try again.";
    case "MFA_TOKEN_EXPIRED":
      return "This sign-in has expired or had too many tries. Start over.";
    case "INVALID_RESET_TOKEN":
    case "INVALID_TOKEN":
      return "This link is invalid, used or expired. Ask for a new one.";
    default:
      return err.message;
  }
}

function status(text) {
  $("status").textContent = text;
}

function show(view) {
  for (const s of document.querySelectorAll("[data-view]")) s.hidden = s.id !== `view-${view}`;
  $("loading").hidden = true;
  const signedIn = auth.isSignedIn();
  for (const li of document.querySelectorAll("[data-signed-in]")) li.hidden = !signedIn;
  for (const li of document.querySelectorAll("[data-signed-out]")) li.hidden = signedIn;
  const heading = $(`h-${view}`);
  document.title = `${heading.textContent} · Account`;
  heading.focus();
}

function go(view) {
  if (location.hash === `#${view}`) void route();
  else location.hash = view;
}

/** Submits `formId` through `action(fields)`, showing errors next to the form. */
function handle(formId, action) {
  const form = $(formId);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const box = form.querySelector("[data-error]");
    box.textContent = "";
    for (const input of form.querySelectorAll("input")) input.removeAttribute("aria-invalid");
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await action(Object.fromEntries(new FormData(form)));
      form.reset();
    } catch (err) {
      box.textContent = message(err);
      const input = isAuthError(err) && err.field ? form.elements.namedItem(err.field) : null;
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-errormessage", box.id || (box.id = `${formId}-error`));
        input.focus();
      }
    } finally {
      button.disabled = false;
    }
  });
}

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function renderSessions(sessions) {
  const list = $("sessions");
  list.replaceChildren();
  for (const s of sessions) {
    const li = document.createElement("li");
    const what = document.createElement("span");
    what.className = "what";
    const device = `${s.device_info.browser ?? "Unknown browser"} on ${s.device_info.platform ?? "an unknown system"}`;
    what.textContent = s.ip_address ? `${device} (${s.ip_address})` : device;
    const sub = document.createElement("span");
    sub.className = "when";
    sub.textContent = `Signed in ${when(s.created_at)}, last active ${when(s.last_active)}`;
    what.append(sub);
    li.append(what);
    if (s.is_current) {
      const here = document.createElement("strong");
      here.textContent = "This device";
      li.append(here);
    } else {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "secondary";
      b.textContent = "Revoke";
      b.setAttribute("aria-label", `Revoke session: ${device}, last active ${when(s.last_active)}`);
      b.addEventListener("click", async () => {
        b.disabled = true;
        try {
          await auth.revokeSession(s.id);
          renderSessions(await auth.sessions());
          status(`Session revoked: ${device}.`);
          $("h-sessions").focus();
        } catch (err) {
          b.disabled = false;
          $("account-error").textContent = message(err);
        }
      });
      li.append(b);
    }
    list.append(li);
  }
}

/** The second step a sign-in is waiting for (never stored: a reload starts over). */
let challenge = null;

/** Inserts the server's QR code (an SVG document) as markup, without running anything. */
function showQr(svgText) {
  const doc = new DOMParser().parseFromString(svgText, "image/svg+xml");
  const svg = doc.documentElement;
  $("mfa-qr").replaceChildren();
  if (svg.nodeName !== "svg") return;
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "QR code for your authenticator app");
  $("mfa-qr").append(document.importNode(svg, true));
}

function renderMfa(me) {
  const how = [];
  if (me.mfa_methods.includes("totp")) how.push("a code from your authenticator app");
  if (me.mfa_methods.includes("webauthn")) how.push("a passkey");
  $("mfa-state").textContent = me.mfa_enabled
    ? `On: after your password, signing in asks for ${how.join(" or ")}.`
    : "Off: signing in needs only your password.";
  $("mfa-setup").hidden = me.mfa_methods.includes("totp");
  $("form-mfa-disable").hidden = !me.mfa_methods.includes("totp");
  $("mfa-enroll").hidden = true;
}

const canPasskey = typeof window.PublicKeyCredential === "function";

function renderPasskeys(list) {
  const ul = $("passkeys");
  ul.replaceChildren();
  for (const k of list) {
    const li = document.createElement("li");
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = k.name;
    const sub = document.createElement("span");
    sub.className = "when";
    sub.textContent = `Added ${when(k.created_at)}${k.last_used_at ? `, last used ${when(k.last_used_at)}` : ""}`;
    what.append(sub);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.textContent = "Remove";
    b.setAttribute("aria-label", `Remove passkey: ${k.name}`);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await auth.removePasskey(k.id);
        status(`Passkey removed: ${k.name}.`);
        await account();
      } catch (err) {
        b.disabled = false;
        $("account-error").textContent = message(err);
      }
    });
    li.append(what, b);
    ul.append(li);
  }
}

async function loadPasskeys() {
  try {
    renderPasskeys(await auth.passkeys());
    $("passkeys-section").hidden = false;
    $("passkey-add").hidden = !canPasskey;
  } catch (err) {
    // Passkeys off on this server (or not allowed yet): no section.
    $("passkeys-section").hidden = true;
    if (!isAuthError(err, "PASSKEYS_DISABLED", "MFA_REQUIRED")) $("account-error").textContent = message(err);
  }
}

async function account() {
  show("account");
  $("account-error").textContent = "";
  try {
    // Both at once: if the access token expired, they share one refresh.
    const [me, sessions] = await Promise.all([auth.me(), auth.sessions()]);
    $("me-email").textContent = me.email;
    $("me-name").textContent = me.name ?? "—";
    $("me-verified").textContent = me.email_verified ? "Yes" : "Not yet";
    $("send-verification").hidden = me.email_verified;
    renderMfa(me);
    renderSessions(sessions);
    await loadPasskeys();
  } catch (err) {
    if (isAuthError(err, "MFA_REQUIRED")) {
      // REQUIRE_MFA: nothing else works until a second factor is set up; offer it.
      renderMfa({ mfa_enabled: false, mfa_methods: [] });
      await loadPasskeys();
      $("account-error").textContent = "Two-step verification is required for this account: set it up to continue.";
      return;
    }
    if (!isAuthError(err, ...SESSION_OVER)) {
      $("account-error").textContent = message(err);
      return;
    }
    status("Your session has ended. Please sign in again.");
    go("signin");
  }
}

async function verify(token) {
  show("verify");
  history.replaceState(null, "", "./#verified");
  try {
    const user = await auth.verifyEmail(token);
    $("verify-result").textContent = `${user.email} is verified. Thank you!`;
  } catch (err) {
    $("verify-result").textContent = message(err);
  }
}

async function route() {
  const hash = location.hash.slice(1);
  if (page() === "reset-password" && linkToken && !hash) return show("reset");
  if (page() === "verify-email" && linkToken && !hash) return verify(linkToken);
  if (hash === "verified") return show("verify");
  if (hash === "mfa" && challenge && !auth.isSignedIn()) {
    $("mfa-passkey").hidden = !(canPasskey && challenge.methods.includes("webauthn"));
    return show("mfa");
  }
  if (["signin", "signup", "forgot"].includes(hash) && !auth.isSignedIn()) return show(hash);
  if (auth.isSignedIn()) return account();
  return show(["signup", "forgot"].includes(hash) ? hash : "signin");
}

handle("form-signin", async (f) => {
  try {
    const user = await auth.login({ email: f.email, password: f.password });
    status(`Signed in as ${user.email}.`);
    go("account");
  } catch (err) {
    if (!isAuthError(err, "MFA_CHALLENGE")) throw err;
    challenge = err.mfa;
    go("mfa");
  }
});
handle("form-mfa", async (f) => {
  try {
    const user = await auth.verifyMfa(challenge?.token ?? "", f.code.trim());
    challenge = null;
    status(`Signed in as ${user.email}.`);
    go("account");
  } catch (err) {
    if (isAuthError(err, "MFA_TOKEN_EXPIRED")) {
      challenge = null;
      status(message(err));
      go("signin");
      return;
    }
    throw err;
  }
});
/** Runs a passkey sign-in from a button, showing errors in `box`. */
async function passkeySignIn(button, box, mfaToken) {
  button.disabled = true;
  box.textContent = "";
  try {
    const user = await auth.signInWithPasskey(mfaToken);
    challenge = null;
    status(`Signed in as ${user.email}.`);
    go("account");
  } catch (err) {
    box.textContent =
      isAuthError(err, "VALIDATION_ERROR") && err.field === "mfa_token"
        ? "Sign in with your password first; then use your passkey."
        : message(err);
  } finally {
    button.disabled = false;
  }
}
$("signin-passkey").hidden = !canPasskey;
$("signin-passkey").addEventListener("click", () =>
  passkeySignIn($("signin-passkey"), $("view-signin").querySelector("[data-error]")),
);
$("mfa-passkey").addEventListener("click", () =>
  passkeySignIn($("mfa-passkey"), $("view-mfa").querySelector("[data-error]"), challenge?.token),
);
$("passkey-add").addEventListener("click", async () => {
  $("passkey-add").disabled = true;
  try {
    const k = await auth.registerPasskey(`${navigator.platform || "This device"} passkey`.trim());
    status(`Passkey added: ${k.name}.`);
    await account();
    $("h-passkeys").focus();
  } catch (err) {
    $("account-error").textContent = message(err);
  } finally {
    $("passkey-add").disabled = false;
  }
});
$("mfa-setup").addEventListener("click", async () => {
  try {
    const setup = await auth.setupTotp();
    showQr(setup.qr_svg);
    $("mfa-secret").textContent = setup.secret;
    $("mfa-setup").hidden = true;
    $("mfa-recovery").hidden = true;
    $("mfa-enroll").hidden = false;
    $("mfa-confirm-code").focus();
  } catch (err) {
    $("account-error").textContent = message(err);
  }
});
handle("form-mfa-confirm", async (f) => {
  const codes = await auth.confirmTotp(f.code.trim());
  const list = $("recovery-codes");
  list.replaceChildren(
    ...codes.map((c) => {
      const li = document.createElement("li");
      li.textContent = c;
      return li;
    }),
  );
  $("account-error").textContent = "";
  await account();
  $("mfa-recovery").hidden = false;
  status("Two-step verification is on. Save your recovery codes.");
  $("h-mfa-settings").focus();
});
handle("form-mfa-disable", async (f) => {
  await auth.disableTotp({ code: f.code.trim() });
  renderMfa(await auth.me());
  $("mfa-recovery").hidden = true;
  status("Two-step verification is off.");
});
handle("form-signup", async (f) => {
  const user = await auth.register({ email: f.email, password: f.password, name: f.name || undefined });
  status(`Account created. Signed in as ${user.email}.`);
  go("account");
});
handle("form-forgot", async (f) => {
  await auth.forgotPassword(f.email);
  status("If an account exists for that email, a reset link is on its way.");
});
handle("form-reset", async (f) => {
  await auth.resetPassword(linkToken ?? "", f.new_password);
  history.replaceState(null, "", "./");
  status("Your password is changed; every session was signed out. Sign in with the new password.");
  go("signin");
});
$("send-verification").addEventListener("click", async () => {
  try {
    await auth.requestEmailVerification();
    status("A verification link is on its way to your inbox.");
  } catch (err) {
    $("account-error").textContent = message(err);
  }
});
$("signout").addEventListener("click", async () => {
  await auth.logout().catch(() => undefined);
  status("Signed out.");
  go("signin");
});
window.addEventListener("hashchange", () => void route());
// Another tab signed in or out (localStorage mode; cookie mode hears it over BroadcastChannel).
window.addEventListener("storage", (ev) => {
  if (ev.key === STORAGE_KEY && (ev.newValue === null) !== (ev.oldValue === null)) void route();
});
auth.onChange((signedIn) => {
  if (!signedIn && !$("view-account").hidden) go("signin");
});

if (transport !== "json") await auth.restore().catch(() => false);
await route();
