// End-to-end tests in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser download). Usage: node e2e/run.mjs PATH/TO/fraise-auth
//
// Starts, on free loopback ports, and kills at the end (only these processes):
//   - "json" server:   UI_ENABLED, TOKEN_TRANSPORT=json, CORS for the static origin, grace 0
//   - "cookie" server: UI_ENABLED, TOKEN_TRANSPORT=cookie, ENABLE_CSRF_PROTECTION
//   - "passkey" server: passkeys on (RP id `localhost`, passwordless), visited as
//     http://localhost:PORT (WebAuthn needs a secure context and an origin matching the RP id)
//   - a static server (this process) on two more ports: the "other origin" app page, which loads
//     the client built by tsc from clients/js/src (dist/), and a second origin CORS does not allow.
// Every server has its own temporary DATA_DIR (SQLite). The browser may reach loopback only: any
// other request is aborted and fails the run. Screenshots go to <repo>/target/e2e/.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, createWriteStream } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..", "..");
const bin = resolve(process.argv[2] ?? process.env.FRAISE_BIN ?? "");
const shots = join(repo, "target", "e2e");
mkdirSync(shots, { recursive: true });
for (const f of readdirSync(shots)) if (f.startsWith("FAIL-")) rmSync(join(shots, f));

const PASSWORD = "TestPass123!";
const children = [];
const tempDirs = [];
const problems = []; // CSP violations, page errors, non-loopback requests: each fails the run

// ---------------------------------------------------------------- servers

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", fail);
  });
}

async function startAuth(name, env, port, host = "127.0.0.1") {
  const dataDir = mkdtempSync(join(tmpdir(), `fraise-e2e-${name}-`));
  tempDirs.push(dataDir);
  const origin = `http://${host}:${port}`;
  const log = createWriteStream(join(shots, `server-${name}.log`));
  const child = spawn(bin, ["serve"], {
    env: {
      PATH: process.env.PATH,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATA_DIR: dataDir,
      UI_ENABLED: "true",
      APP_BASE_URL: `${origin}/ui`,
      // Light hashing: this measures the browser side, not Argon2.
      ARGON2_MEMORY_COST: "8192",
      ARGON2_TIME_COST: "1",
      ARGON2_PARALLELISM: "1",
      ENABLE_RATE_LIMITING: "false",
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  children.push(child);
  for (let i = 0; i < 150; i++) {
    if (child.exitCode !== null) throw new Error(`${name} server exited (${child.exitCode}); see target/e2e/server-${name}.log`);
    try {
      if ((await fetch(`${origin}/health/ready`)).status === 200) return { origin, dataDir, name };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} server not ready after 15 s; see target/e2e/server-${name}.log`);
}

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

/** The other origin: its page and the client as tsc built it, under a strict CSP of its own. */
async function startStatic(apiOrigin) {
  const port = await freePort();
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const file = path.startsWith("/client/")
      ? join(here, "..", "dist", path.slice("/client/".length))
      : join(here, "pages", path.slice(1));
    try {
      const body = readFileSync(file);
      res.writeHead(200, {
        "content-type": TYPES[extname(file)] ?? "application/octet-stream",
        "content-security-policy": `default-src 'none'; script-src 'self'; connect-src ${apiOrigin}`,
      });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  return { origin: `http://127.0.0.1:${port}`, close: () => server.close() };
}

/** The link of the newest email to `to` in the server's outbox (waits for it: mail is async). */
async function mailLink(server, to, seen) {
  const dir = join(server.dataDir, "outbox");
  for (let i = 0; i < 100; i++) {
    let files = [];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith(".eml") && !seen.has(f));
    } catch {
      // no outbox yet
    }
    for (const f of files) {
      // Quoted-printable (soft line breaks, =3D) when the mailer chose it; plain text is unchanged.
      const raw = readFileSync(join(dir, f), "utf8");
      const text = /quoted-printable/i.test(raw)
        ? raw.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)))
        : raw;
      if (!text.includes(to)) continue;
      seen.add(f);
      const link = text.match(/https?:\/\/\S+token=[A-Za-z0-9_\-.%]+\S*/);
      assert.ok(link, `no link in ${f}:\n${text}`);
      return link[0];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no email to ${to} in ${dir}`);
}

/** Marks every email already in the outbox as seen (register may have mailed a link already). */
function skipMail(server, seen) {
  try {
    for (const f of readdirSync(join(server.dataDir, "outbox"))) seen.add(f);
  } catch {
    // no outbox yet
  }
}

async function api(server, path, body, headers = {}) {
  const res = await fetch(`${server.origin}/auth${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// ---------------------------------------------------------------- browser

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"];
let browser;

async function newContext(opts = {}) {
  const context = await browser.newContext(opts);
  // Loopback only: anything else is aborted and reported.
  await context.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host === "127.0.0.1" || host === "localhost") return route.continue();
    problems.push(`request to a non-loopback host: ${route.request().url()}`);
    return route.abort();
  });
  context.on("page", watch);
  return context;
}

const openPages = new Set();

function watch(page) {
  openPages.add(page);
  page.on("close", () => openPages.delete(page));
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP on ${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** The page does not scroll sideways at its current (phone) width. */
async function fitsWidth(page) {
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= width, `${page.url()} scrolls sideways: ${scroll} > ${width}`);
}

/** The field labelled `label` in the view on screen (each view has its own "Email"). */
function field(page, label) {
  return page.locator("[data-view]:not([hidden])").getByLabel(label, { exact: true });
}

async function focusedId(page) {
  return page.evaluate(() => document.activeElement?.id ?? "");
}

const PHONE = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

// ---------------------------------------------------------------- tests

/** Sign up (keyboard), weak password error, sessions with revoke, verify email, forgot/reset. */
async function hostedPageFlow({ json }) {
  const context = await newContext(PHONE);
  const page = await context.newPage();
  const email = "hosted@example.com";
  const seen = new Set();

  const res = await page.goto(`${json.origin}/ui/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()["content-security-policy"], /script-src 'self'/);
  assert.doesNotMatch(res.headers()["content-security-policy"], /unsafe-inline/);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await fitsWidth(page);
  await shot(page, "01-sign-in-phone");

  // Keyboard only: focus the "Sign up" link, Enter, type, Enter.
  await page.getByRole("link", { name: "Sign up" }).first().focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Create an account" }).waitFor();
  assert.equal(await focusedId(page), "h-signup", "the new view's heading takes the focus");
  await page.keyboard.press("Tab");
  assert.equal(await focusedId(page), "signup-name");
  await page.keyboard.type("Hosted User");
  await page.keyboard.press("Tab");
  await page.keyboard.type(email);
  await page.keyboard.press("Tab");
  await page.keyboard.type("weakpassword");
  await page.keyboard.press("Enter");
  const error = page.locator("#view-signup [data-error]");
  await error.filter({ hasText: /./ }).waitFor();
  assert.equal(await field(page, "Password").getAttribute("aria-invalid"), "true");
  assert.equal(await focusedId(page), "signup-password", "the invalid field takes the focus");
  await shot(page, "02-sign-up-weak-password-phone");
  await field(page, "Password").fill(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Your account" }).waitFor();
  await page.locator("#me-email", { hasText: email }).waitFor();
  assert.equal(await page.locator("#me-verified").textContent(), "Not yet");

  // A second session elsewhere; the page lists both and revokes the other.
  const other = await api(json, "/login", { email, password: PASSWORD }, { "user-agent": "curl/8.0" });
  assert.equal(other.status, 200);
  await page.reload();
  const items = page.locator("#sessions li");
  await items.nth(1).waitFor();
  assert.equal(await items.count(), 2);
  await page.locator("#sessions li", { hasText: "This device" }).waitFor();
  await fitsWidth(page);
  await shot(page, "03-account-two-sessions-phone");
  await page.getByRole("button", { name: /^Revoke session/ }).focus();
  await page.keyboard.press("Enter");
  await page.locator("#status", { hasText: "Session revoked" }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("#sessions li").length === 1);
  assert.equal(await focusedId(page), "h-sessions", "focus stays in the list's section");
  const dead = await api(json, "/refresh", { refresh_token: other.body.refresh_token });
  assert.equal(dead.status, 401, JSON.stringify(dead.body));
  assert.equal(dead.body.detail.code, "INVALID_TOKEN");

  // Verify email: the button mails a link; the link opens the page, which verifies.
  skipMail(json, seen);
  await page.getByRole("button", { name: "Send verification email" }).click();
  await page.locator("#status", { hasText: "verification link" }).waitFor();
  const verifyLink = await mailLink(json, email, seen);
  assert.ok(verifyLink.startsWith(`${json.origin}/ui/verify-email?token=`), verifyLink);
  await page.goto(verifyLink);
  await page.locator("#verify-result", { hasText: `${email} is verified` }).waitFor();
  assert.ok(!page.url().includes("token="), "the token is removed from the address bar");
  await shot(page, "04-email-verified-phone");
  await page.getByRole("link", { name: "Go to your account" }).click();
  await page.locator("#me-verified", { hasText: "Yes" }).waitFor();

  // Sign out, forgot password, reset through the emailed link, sign in with the new password.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem("fraise-auth-ui")), null);
  await page.getByRole("link", { name: "Forgot password" }).first().click();
  await page.getByRole("heading", { name: "Forgot your password?" }).waitFor();
  await field(page, "Email").fill(email);
  skipMail(json, seen);
  await page.getByRole("button", { name: "Send reset link" }).click();
  await page.locator("#status", { hasText: "reset link is on its way" }).waitFor();
  await shot(page, "05-forgot-password-phone");
  const resetLink = await mailLink(json, email, seen);
  assert.ok(resetLink.startsWith(`${json.origin}/ui/reset-password?token=`), resetLink);
  await page.goto(resetLink);
  await page.getByRole("heading", { name: "Choose a new password" }).waitFor();
  await shot(page, "06-reset-password-phone");
  const newPassword = "NewPass456!x";
  await field(page, "New password").fill(newPassword);
  await page.keyboard.press("Enter");
  await page.locator("#status", { hasText: "password is changed" }).waitFor();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await field(page, "Email").fill(email);
  await field(page, "Password").fill(PASSWORD);
  await page.keyboard.press("Enter");
  await page.locator("#view-signin [data-error]", { hasText: "Wrong email or password" }).waitFor();
  await field(page, "Password").fill(newPassword);
  await page.keyboard.press("Enter");
  await page.locator("#me-email", { hasText: email }).waitFor();
  await context.close();

  // The same page on a desktop screen, for the record.
  const desktop = await newContext({ viewport: { width: 1280, height: 800 } });
  const p2 = await desktop.newPage();
  await p2.goto(`${json.origin}/ui/`);
  await p2.getByRole("heading", { name: "Sign in" }).waitFor();
  await field(p2, "Email").fill(email);
  await field(p2, "Password").fill(newPassword);
  await p2.getByRole("button", { name: "Sign in", exact: true }).click();
  await p2.locator("#me-email", { hasText: email }).waitFor();
  await shot(p2, "07-account-desktop");
  await desktop.close();
}

/** RFC 6238 (SHA-1, 6 digits, 30 s) from a base32 secret, written out here (not the server's). */
function totpCode(secretB32, unixSeconds) {
  let bits = "";
  for (const c of secretB32) bits += "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const h = createHmac("sha1", key).update(counter).digest();
  const off = h[19] & 0x0f;
  return String((h.readUInt32BE(off) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/** The hosted page: turn on TOTP (QR code, key, recovery codes), two-step sign-in, turn it off. */
async function hostedTotp({ json }) {
  const context = await newContext(PHONE);
  const page = await context.newPage();
  const email = "totp@example.com";
  assert.equal((await api(json, "/register", { email, password: PASSWORD })).status, 201);
  await page.goto(`${json.origin}/ui/`);
  await field(page, "Email").fill(email);
  await field(page, "Password").fill(PASSWORD);
  await page.keyboard.press("Enter");
  await page.locator("#mfa-state", { hasText: /^Off:/ }).waitFor();
  await page.getByRole("button", { name: "Set up an authenticator app" }).click();
  await page.getByRole("img", { name: "QR code for your authenticator app" }).waitFor();
  const secret = (await page.locator("#mfa-secret").textContent()).trim();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  await fitsWidth(page);
  await shot(page, "08-totp-setup-phone");
  await page.getByLabel("Code from the app", { exact: true }).fill(totpCode(secret, Date.now() / 1000));
  await page.getByRole("button", { name: "Turn on" }).click();
  await page.locator("#mfa-state", { hasText: /^On:/ }).waitFor();
  const codes = await page.locator("#recovery-codes li").allTextContents();
  assert.equal(codes.length, 10);
  await shot(page, "09-totp-recovery-codes-phone");

  // Sign out; signing in now takes a second step. A wrong code is explained; a recovery code works
  // (the app's current code was just spent by the confirmation: a replay would be refused).
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await field(page, "Email").fill(email);
  await field(page, "Password").fill(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Two-step verification" }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem("fraise-auth-ui")), null, "no session before the second step");
  await field(page, "Code").fill("000000");
  await page.keyboard.press("Enter");
  await page.locator("#view-mfa [data-error]", { hasText: "not right" }).waitFor();
  await field(page, "Code").fill(codes[0]);
  await page.keyboard.press("Enter");
  await page.locator("#me-email", { hasText: email }).waitFor();
  const me = await api(json, "/login", { email, password: PASSWORD });
  assert.equal(me.body.mfa_required, true, JSON.stringify(me.body));

  // Turn it off with another recovery code; the next sign-in is one step again.
  await page.getByLabel("Code from the app, or a recovery code", { exact: true }).fill(codes[1]);
  await page.getByRole("button", { name: "Turn off" }).click();
  await page.locator("#mfa-state", { hasText: /^Off:/ }).waitFor();
  const plain = await api(json, "/login", { email, password: PASSWORD });
  assert.equal(typeof plain.body.access_token, "string", JSON.stringify(plain.body));
  await context.close();
}

/** A page on another origin uses the client across CORS; an origin not allowed cannot. */
async function crossOrigin({ json, app, stranger }) {
  const context = await newContext();
  const page = await context.newPage();
  await page.goto(`${app.origin}/cross.html?api=${json.origin}`);
  await page.locator("body[data-ready=yes]").waitFor();
  const out = await page.evaluate(async (password) => {
    const user = await client.register({ email: "cross@example.com", password, name: "Cross" });
    const me = await client.me();
    const sessions = await client.sessions();
    const before = storage.get();
    storage.set({ ...before, expiresAt: Date.now() - 1000 }); // as if 15 minutes had passed
    const again = await client.me();
    const after = storage.get();
    const dup = await client.register({ email: "cross@example.com", password }).catch((e) => e);
    return {
      user: user.email,
      me: me.email,
      sessions: sessions.length,
      again: again.email,
      rotated: before.refreshToken !== after.refreshToken,
      dup: { name: dup.name, code: dup.code, status: dup.status, isAuthError: lib.isAuthError(dup, "EMAIL_ALREADY_EXISTS") },
    };
  }, PASSWORD);
  assert.deepEqual(out, {
    user: "cross@example.com",
    me: "cross@example.com",
    sessions: 1,
    again: "cross@example.com",
    rotated: true,
    dup: { name: "FraiseAuthError", code: "EMAIL_ALREADY_EXISTS", status: 409, isAuthError: true },
  });
  await page.locator("#who", { hasText: "someone" }).waitFor();
  await shot(page, "08-cross-origin-page");
  const logout = await page.evaluate(async () => {
    await client.logout();
    return client.me().catch((e) => e.code);
  });
  assert.equal(logout, "NOT_SIGNED_IN");
  await context.close();

  // An origin that CORS_ALLOWED_ORIGINS does not list: the browser refuses to hand over answers.
  const c2 = await newContext();
  const p2 = await c2.newPage();
  p2.removeAllListeners("console"); // its CORS refusal is the expected outcome, not a problem
  await p2.goto(`${stranger.origin}/cross.html?api=${json.origin}`);
  await p2.locator("body[data-ready=yes]").waitFor();
  const refused = await p2.evaluate(() => client.forgotPassword("cross@example.com").then(() => "ok", (e) => e.code));
  assert.equal(refused, "NETWORK_ERROR");
  await c2.close();
}

/** Cookie mode: the refresh token only in an HttpOnly cookie; CSRF header required and sent. */
async function cookieMode({ cookie }) {
  const context = await newContext();
  const page = await context.newPage();
  const email = "cookie@example.com";
  await page.goto(`${cookie.origin}/ui/#signup`);
  await page.getByRole("heading", { name: "Create an account" }).waitFor();
  await field(page, "Email").fill(email);
  await field(page, "Password").fill(PASSWORD);
  const [registered] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/auth/register")),
    page.getByRole("button", { name: "Create account" }).click(),
  ]);
  assert.equal(registered.status(), 201);
  assert.equal((await registered.json()).refresh_token, undefined, "no refresh token in the body");
  await page.locator("#me-email", { hasText: email }).waitFor();

  const cookies = await context.cookies(cookie.origin + "/auth/refresh");
  const refresh = cookies.find((c) => c.name === "fraise_refresh");
  const csrf = cookies.find((c) => c.name === "csrf_token");
  assert.ok(refresh && refresh.httpOnly && refresh.sameSite === "Strict", JSON.stringify(cookies));
  assert.ok(csrf && !csrf.httpOnly, JSON.stringify(cookies));
  const visible = await page.evaluate(() => [document.cookie, JSON.stringify(localStorage)]);
  assert.ok(!visible[0].includes("fraise_refresh") && !visible[1].includes(refresh.value), "scripts cannot see it");

  // A reload keeps the session: the page gets a new access token from the cookie.
  const [restored] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/auth/refresh")),
    page.reload(),
  ]);
  assert.equal(restored.status(), 200);
  assert.equal(restored.request().headers()["x-csrf-token"], csrf.value);
  await page.locator("#me-email", { hasText: email }).waitFor();
  await shot(page, "09-cookie-mode-account");

  // Without the header the same request is refused; the client's refresh (with it) passes.
  const forged = await page.evaluate(async (prefix) => {
    const r = await fetch(`${prefix}/refresh`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    return [r.status, (await r.json()).detail?.code];
  }, "/auth");
  assert.deepEqual(forged, [403, "CSRF_FAILED"]);
  assert.equal(await page.evaluate(() => fraiseAuth.refresh().then(() => "ok", (e) => e.code)), "ok");

  // Two tabs of the cookie-mode page refresh at the same moment: no theft, one session.
  const tab2 = await context.newPage();
  await tab2.goto(`${cookie.origin}/ui/`);
  await tab2.locator("#me-email", { hasText: email }).waitFor();
  const at = Date.now() + 400;
  const both = await Promise.all(
    [page, tab2].map((p) =>
      p.evaluate(async (at) => {
        await new Promise((r) => setTimeout(r, at - Date.now()));
        return fraiseAuth.refresh().then(() => fraiseAuth.me()).then((u) => u.email, (e) => e.code);
      }, at),
    ),
  );
  assert.deepEqual(both, [email, email]);
  const sessions = await page.evaluate(() => fraiseAuth.sessions().then((s) => s.length));
  assert.equal(sessions, 1, "the session survived both refreshes");

  // Sign out clears the cookie.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  const left = (await context.cookies(cookie.origin + "/auth/refresh")).filter((c) => c.name === "fraise_refresh");
  assert.deepEqual(left, []);
  await context.close();
}

/**
 * Two tabs sharing localStorage find the access token expired and call the API at the same
 * moment. With the cross-tab lock: exactly one POST /refresh, both calls succeed. The server runs
 * with REFRESH_REUSE_GRACE_SECONDS=0, so the grace window cannot hide a double refresh; the
 * control run (lock off, same timing) shows the replay really is detected without the lock:
 * two refreshes with one token, and TOKEN_THEFT_DETECTED.
 */
async function twoTabs({ json, app }, lock, round = 0) {
  const context = await newContext();
  const refreshes = [];
  context.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/auth/refresh")) refreshes.push(r.url());
  });
  const url = `${app.origin}/cross.html?api=${json.origin}&storage=local&lock=${lock ? "on" : "off"}`;
  const [tab1, tab2] = [await context.newPage(), await context.newPage()];
  for (const t of [tab1, tab2]) {
    await t.goto(url);
    await t.locator("body[data-ready=yes]").waitFor();
  }
  // Tab 2's refresh requests leave 400 ms late, in both runs. Two requests sent at the very same
  // instant can both be read before either rotation is written, which the server rightly treats
  // as one refresh; the delay makes a second use of the token a replay the server must see.
  // With the lock, tab 2 never sends one (or, holding the lock first, delays tab 1 instead).
  await tab2.route("**/auth/refresh", async (route) => {
    await new Promise((r) => setTimeout(r, 400));
    await route.continue();
  });
  const email = `tabs-${lock ? "lock" : "nolock"}-${round}@example.com`;
  assert.equal(await tab1.evaluate(() => typeof navigator.locks?.request), "function");
  await tab1.evaluate(({ email, password }) => client.register({ email, password }), { email, password: PASSWORD });
  // Both tabs see the same stored session; make its access token expired.
  await tab2.evaluate(() => storage.set({ ...storage.get(), expiresAt: Date.now() - 1000 }));
  const at = Date.now() + 500;
  const results = await Promise.all(
    [tab1, tab2].map((t) =>
      t.evaluate(async (at) => {
        await new Promise((r) => setTimeout(r, at - Date.now()));
        return client.me().then((u) => u.email, (e) => e.code);
      }, at),
    ),
  );
  await context.close();
  return { results, refreshes: refreshes.length, email };
}

async function twoTabsRefreshOnce(env) {
  // Several rounds: a race that loses one time in ten has little chance to hide.
  for (let round = 1; round <= 5; round++) {
    const { results, refreshes, email } = await twoTabs(env, true, round);
    assert.deepEqual(results, [email, email], `round ${round}`);
    assert.equal(refreshes, 1, `round ${round}: one refresh for both tabs`);
  }
  const control = await twoTabs(env, false);
  // Both tabs refresh with the same token (then the revoked tab may try once more).
  assert.ok(control.refreshes >= 2, `control: without the lock both tabs refresh (${control.refreshes})`);
  assert.ok(control.results.includes("TOKEN_THEFT_DETECTED"), `control: ${JSON.stringify(control.results)}`);
}

/**
 * Passkeys in the browser: Chromium's virtual authenticator (CDP WebAuthn domain: CTAP2, internal
 * transport, resident keys, user verification) answers navigator.credentials. A signed-in user
 * registers a passkey (bearer), signs out, and signs in with the passkey alone (passwordless).
 */
/** Chromium's virtual authenticator on `page` (CDP WebAuthn): CTAP2, built in, resident keys,
 * user verification that always succeeds, presence simulated. */
async function virtualAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

async function passkeys({ passkey }) {
  const context = await newContext();
  const page = await context.newPage();
  const { cdp, authenticatorId } = await virtualAuthenticator(context, page);
  // A page of the configured origin (http://localhost:PORT): a secure context for WebAuthn.
  await page.goto(`${passkey.origin}/ui/`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  assert.equal(await page.evaluate(() => window.isSecureContext), true);

  const email = "passkey@example.com";
  const out = await page.evaluate(
    async ({ email, password }) => {
      const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
      const call = async (path, body, token) => {
        const headers = { "content-type": "application/json" };
        if (token) headers.authorization = `Bearer ${token}`;
        const r = await fetch(`/auth${path}`, { method: "POST", headers, body: JSON.stringify(body ?? {}) });
        return { status: r.status, body: await r.json() };
      };
      const reg = await call("/register", { email, password, name: "Passkey User" });
      // Register a passkey: the server's options, binary members decoded, to the authenticator.
      const start = await call("/webauthn/register/start", {}, reg.body.access_token);
      const pk = start.body.options.publicKey;
      const created = await navigator.credentials.create({
        publicKey: {
          ...pk,
          challenge: bytes(pk.challenge),
          user: { ...pk.user, id: bytes(pk.user.id) },
          excludeCredentials: (pk.excludeCredentials ?? []).map((c) => ({ ...c, id: bytes(c.id) })),
        },
      });
      const finish = await call(
        "/webauthn/register/finish",
        {
          ceremony_id: start.body.ceremony_id,
          name: "Chromium virtual authenticator",
          credential: {
            id: created.id,
            rawId: b64(created.rawId),
            type: created.type,
            response: {
              attestationObject: b64(created.response.attestationObject),
              clientDataJSON: b64(created.response.clientDataJSON),
            },
            clientExtensionResults: created.getClientExtensionResults(),
          },
        },
        reg.body.access_token,
      );
      // Sign out.
      const logout = await call("/logout", { refresh_token: reg.body.refresh_token });
      // Sign in with the passkey alone: no email, no password.
      const ls = await call("/webauthn/login/start", {});
      const rk = ls.body.options.publicKey;
      const got = await navigator.credentials.get({
        publicKey: {
          ...rk,
          challenge: bytes(rk.challenge),
          allowCredentials: (rk.allowCredentials ?? []).map((c) => ({ ...c, id: bytes(c.id) })),
        },
      });
      const login = await call("/webauthn/login/finish", {
        ceremony_id: ls.body.ceremony_id,
        credential: {
          id: got.id,
          rawId: b64(got.rawId),
          type: got.type,
          response: {
            authenticatorData: b64(got.response.authenticatorData),
            clientDataJSON: b64(got.response.clientDataJSON),
            signature: b64(got.response.signature),
            userHandle: got.response.userHandle ? b64(got.response.userHandle) : null,
          },
          clientExtensionResults: {},
        },
      });
      const me = await fetch("/auth/me", { headers: { authorization: `Bearer ${login.body.access_token}` } });
      const list = await fetch("/auth/webauthn/credentials", {
        headers: { authorization: `Bearer ${login.body.access_token}` },
      });
      return {
        registered: [reg.status, start.status, finish.status, finish.body.name],
        residentKey: pk.authenticatorSelection?.residentKey,
        logout: logout.status,
        loginStart: [ls.status, (rk.allowCredentials ?? []).length],
        login: [login.status, login.body.user?.email],
        me: (await me.json()).email,
        used: (await list.json()).credentials.map((c) => [c.name, c.last_used_at !== null]),
      };
    },
    { email, password: PASSWORD },
  );
  assert.deepEqual(out, {
    registered: [201, 200, 201, "Chromium virtual authenticator"],
    residentKey: "required",
    logout: 200,
    loginStart: [200, 0],
    login: [200, email],
    me: email,
    used: [["Chromium virtual authenticator", true]],
  });
  // The authenticator holds one discoverable credential for this RP, used once.
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1);
  assert.equal(credentials[0].isResidentCredential, true);
  assert.equal(credentials[0].rpId, "localhost");
  assert.ok(credentials[0].signCount >= 1, JSON.stringify(credentials[0].signCount));
  await shot(page, "10-passkey-signed-in");
  await context.close();
}

/** The hosted page with a virtual authenticator: add a passkey, use it as the second step after
 * the password, then passwordless; remove it. */
async function hostedPasskeys({ passkey }) {
  const context = await newContext();
  const page = await context.newPage();
  const { cdp, authenticatorId } = await virtualAuthenticator(context, page);
  const email = "hosted-passkey@example.com";
  assert.equal((await api(passkey, "/register", { email, password: PASSWORD })).status, 201);
  await page.goto(`${passkey.origin}/ui/`);
  await field(page, "Email").fill(email);
  await field(page, "Password").fill(PASSWORD);
  await page.keyboard.press("Enter");
  await page.locator("#mfa-state", { hasText: /^Off:/ }).waitFor();
  await page.getByRole("button", { name: "Add a passkey on this device" }).click();
  await page.locator("#status", { hasText: "Passkey added" }).waitFor();
  await page.locator("#passkeys li").first().waitFor();
  assert.equal(await page.locator("#passkeys li").count(), 1);
  await page.locator("#mfa-state", { hasText: "a passkey" }).waitFor();
  await shot(page, "11-hosted-passkey-added");

  // The password alone is no longer enough: the second step offers the passkey.
  await page.getByRole("button", { name: "Sign out" }).click();
  await field(page, "Email").fill(email);
  await field(page, "Password").fill(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Two-step verification" }).waitFor();
  await page.getByRole("button", { name: "Use a passkey instead" }).click();
  await page.locator("#me-email", { hasText: email }).waitFor();

  // Passwordless: no email, no password.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.getByRole("button", { name: "Sign in with a passkey" }).click();
  await page.locator("#me-email", { hasText: email }).waitFor();
  await page.locator("#passkeys li", { hasText: "last used" }).waitFor();

  // Removed: the next password sign-in is one step again.
  await page.getByRole("button", { name: /^Remove passkey/ }).click();
  await page.locator("#status", { hasText: "Passkey removed" }).waitFor();
  await page.locator("#mfa-state", { hasText: /^Off:/ }).waitFor();
  const plain = await api(passkey, "/login", { email, password: PASSWORD });
  assert.equal(typeof plain.body.access_token, "string", JSON.stringify(plain.body));
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1, "the authenticator keeps its copy; the server no longer accepts it");
  await context.close();
}

// ---------------------------------------------------------------- main

const tests = [
  ["the hosted page: sign up, sessions and revoke, verify email, forgot and reset password", hostedPageFlow],
  ["the hosted page: TOTP with QR code and recovery codes, two-step sign-in, turned off again", hostedTotp],
  ["a page on another origin uses the client across CORS; an unlisted origin cannot", crossOrigin],
  ["cookie mode: HttpOnly refresh cookie, CSRF header required and sent, reload and two tabs", cookieMode],
  ["two tabs refreshing at the same moment: one refresh, no theft (control without the lock: theft)", twoTabsRefreshOnce],
  ["passkeys: register with a virtual authenticator, sign out, sign in with the passkey alone", passkeys],
  ["the hosted page with passkeys: add one, second step after the password, passwordless, remove", hostedPasskeys],
];

let failed = 0;
const started = Date.now();
try {
  assert.ok(bin && readFileSync(bin).length > 0, "usage: node e2e/run.mjs PATH/TO/fraise-auth");
  readFileSync(join(here, "..", "dist", "index.js")); // the client must be built (npm run build)
  const jsonPort = await freePort();
  const jsonOrigin = `http://127.0.0.1:${jsonPort}`;
  const appServer = await startStatic(jsonOrigin);
  const stranger = await startStatic(jsonOrigin);
  const json = await startAuth(
    "json",
    { TOKEN_TRANSPORT: "json", REFRESH_REUSE_GRACE_SECONDS: "0", CORS_ALLOWED_ORIGINS: appServer.origin },
    jsonPort,
  );
  const cookie = await startAuth(
    "cookie",
    { TOKEN_TRANSPORT: "cookie", ENABLE_CSRF_PROTECTION: "true", REFRESH_REUSE_GRACE_SECONDS: "0" },
    await freePort(),
  );
  const passkeyPort = await freePort();
  const passkey = await startAuth(
    "passkey",
    {
      TOKEN_TRANSPORT: "json",
      WEBAUTHN_RP_ID: "localhost",
      WEBAUTHN_ORIGIN: `http://localhost:${passkeyPort}`,
      WEBAUTHN_PASSWORDLESS: "true",
    },
    passkeyPort,
    "localhost",
  );
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: FLAGS });
  const env = { json, cookie, app: appServer, stranger, passkey };
  for (const [name, fn] of tests) {
    const t0 = Date.now();
    const before = problems.length;
    try {
      await fn(env);
      assert.deepEqual(problems.slice(before), [], "CSP violations, page errors or outside requests");
      console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed += 1;
      let n = 0;
      for (const p of openPages) {
        await p.screenshot({ path: join(shots, `FAIL-${failed}-${++n}.png`), fullPage: true }).catch(() => undefined);
        console.log(`     page ${n}: ${p.url()}: ${await p.locator("main").innerText().catch(() => "?")}`);
      }
      console.log(`FAIL ${name}\n     ${String(e?.stack ?? e).split("\n").join("\n     ")}`);
    }
  }
  appServer.close();
  stranger.close();
} catch (e) {
  failed += 1;
  console.log(`FAIL setup: ${e?.stack ?? e}`);
} finally {
  await browser?.close();
  for (const c of children) c.kill("SIGTERM");
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
}
console.log(
  `e2e: ${tests.length - Math.min(failed, tests.length)} passed, ${failed} failed, ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${shots}`,
);
process.exit(failed === 0 ? 0 : 1);
