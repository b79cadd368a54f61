// Signs in to changeflow's web view through npm's `oidc-provider` (its own development login
// and consent pages) in Debian's Chromium. Run by tests/web_view.rs with UI (the web view) and
// ISSUER (the provider); prints one line and exits non-zero on a failed assertion.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const { UI, ISSUER } = process.env;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
page.setDefaultTimeout(30_000);
await page.goto(UI);
assert.equal(new URL(page.url()).origin, new URL(ISSUER).origin, `sent to the provider, not ${page.url()}`);
await page.fill('input[name=login]', 'alice');
await page.fill('input[name=password]', 'any');
await page.click('button[type=submit]');
// Its consent page, when it asks.
await page.waitForURL((url) => url.origin === new URL(UI).origin || /consent|interaction/.test(url.href));
if (new URL(page.url()).origin !== new URL(UI).origin) {
  await page.click('button[type=submit]');
}
await page.waitForURL((url) => url.origin === new URL(UI).origin && url.pathname === '/ui/');
assert.match(await page.textContent('#viewer'), /alice/);
assert.match(await page.textContent('h1'), /Changes/);
console.log('ok: signed in through oidc-provider as alice, the changes page shows');
await browser.close();
