// Drives /docs and /redoc in headless Chromium the way a person would:
// register a user over HTTP, open Swagger UI, Authorize through the OAuth2
// password flow, "Try it out" on GET /api/auth/me, and find the user's
// e-mail in the response shown on the page. Then check that ReDoc renders.
// Fails on any Content-Security-Policy violation, page error, or request
// that leaves the service's own origin (the pages must work offline).
//
// usage: node docs.mjs http://127.0.0.1:PORT

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const base = (process.argv[2] || "").replace(/\/$/, "");
if (!base) {
  console.error("usage: node docs.mjs <base url>");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });

const email = `browser-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
const password = "browser-test-password-42";

async function register() {
  const response = await fetch(`${base}/api/auth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (response.status !== 201) {
    throw new Error(`register answered ${response.status}: ${await response.text()}`);
  }
}

// ReDoc's sidebar always asks for the Redocly logo from its CDN; the CSP
// blocks it and ReDoc hides the image when it fails. Nothing else may leave.
const TOLERATED = "https://cdn.redoc.ly/redoc/logo-mini.svg";

const problems = [];
function watch(page, name) {
  const origin = new URL(base).origin;
  page.on("console", (message) => {
    const text = message.text();
    if (/Content Security Policy|Refused to/i.test(text) && !text.includes(TOLERATED)) {
      problems.push(`${name}: CSP: ${text}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`${name}: page error: ${error.message}`));
  page.on("request", (request) => {
    const url = request.url();
    const local = url.startsWith(origin) || url.startsWith("data:") || url.startsWith("blob:");
    if (!local && url !== TOLERATED) {
      problems.push(`${name}: request to another origin: ${url}`);
    }
  });
}

async function swaggerUi(context) {
  const page = await context.newPage();
  watch(page, "/docs");
  const response = await page.goto(`${base}/docs`);
  if (response.status() !== 200) throw new Error(`/docs answered ${response.status()}`);
  await page.locator("button.authorize").first().click();

  // The dialog lists both schemes: work in the OAuth2 one.
  const dialog = page.locator(".modal-ux");
  const oauth2 = dialog.locator(".auth-container").filter({ hasText: "OAuth2Password" });
  await oauth2.locator("input#oauth_username").fill(email);
  await oauth2.locator("input#oauth_password").fill(password);
  await oauth2.getByRole("button", { name: "Apply given OAuth2 credentials" }).click();
  // Swagger UI shows a Logout button once the token endpoint answered 200.
  await oauth2.locator("button", { hasText: "Logout" }).waitFor({ timeout: 15000 });
  await dialog.locator("button.btn-done, button.close-modal").first().click();

  const operation = page.locator("#operations-auth-me");
  await operation.locator(".opblock-summary").first().click();
  await operation.locator("button.try-out__btn").click();
  await operation.locator("button.execute").click();
  const shown = operation.locator(".live-responses-table tr.response .response-col_description");
  await shown.getByText(email).first().waitFor({ timeout: 15000 });
  const status = (await operation.locator(".live-responses-table tr.response .response-col_status").first().innerText()).trim();
  if (status !== "200") throw new Error(`GET /api/auth/me showed status ${status}`);
  await shown.first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(artifacts, "swagger-ui-me.png"), fullPage: false });
  await page.close();
}

async function redoc(context) {
  const page = await context.newPage();
  watch(page, "/redoc");
  const response = await page.goto(`${base}/redoc`);
  if (response.status() !== 200) throw new Error(`/redoc answered ${response.status()}`);
  // ReDoc renders every operation's summary from the document.
  await page.locator("h2", { hasText: "Log in (OAuth2 password grant)" }).first().waitFor({ timeout: 20000 });
  await page.locator("h1", { hasText: "Auth Service" }).first().waitFor();
  await page.screenshot({ path: join(artifacts, "redoc.png"), fullPage: false });
  await page.close();
}

const userDataDir = mkdtempSync(join(tmpdir(), "auth-service-chromium-"));
let context;
let failed = false;
try {
  await register();
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  await swaggerUi(context);
  await redoc(context);
  if (problems.length) throw new Error(problems.join("\n"));
  console.log(`browser: /docs authorized as ${email} and GET /api/auth/me showed it; /redoc rendered`);
} catch (error) {
  failed = true;
  console.error(`browser test failed: ${error.stack || error}`);
  if (problems.length) console.error(problems.join("\n"));
  for (const page of context ? context.pages() : []) {
    await page.screenshot({ path: join(artifacts, "failure.png") }).catch(() => {});
  }
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
