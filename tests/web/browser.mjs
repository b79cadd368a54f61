// Drives Debian's Chromium (playwright-core, pinned in tools/node) through changeflow's web view
// against a running `changeflow dev`. Run by tests/web_view.rs with:
//   UI        the web view's URL (http://127.0.0.1:PORT/ui/)
//   ISSUER    the development OpenID provider's URL
//   APPROVE   a change alice requested through MCP, awaiting approval
//   CANCEL    another of alice's changes awaiting approval, for the cancel scenario
//   SCREENSHOT where to write the screenshot of the change's page
// Prints one line per scenario; exits non-zero (with the failed assertion) on the first failure.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const { UI, ISSUER, APPROVE, CANCEL, SCREENSHOT } = process.env;
const ui = new URL(UI);
const issuer = new URL(ISSUER);
const LONG = 150_000;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
// Every request any page makes, to prove nothing comes from outside changeflow.
const requested = [];

async function person() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  context.on('request', (r) => requested.push(r.url()));
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  return { context, page };
}

/// Signs in as a demo user through the development provider's page.
async function signIn(page, user, path = '/ui/') {
  await page.goto(new URL(path, ui).href);
  assert.equal(new URL(page.url()).origin, issuer.origin, `an unsigned request is sent to the provider, not ${page.url()}`);
  await page.click(`button[value="${user}"]`);
  await page.waitForURL((url) => url.origin === ui.origin && !url.pathname.startsWith('/ui/callback'));
  assert.match(await page.textContent('#viewer'), new RegExp(user, 'i'));
}

async function axe(page, what) {
  // Evaluated through the DevTools protocol, which the page's CSP (no inline script, no eval)
  // does not govern; the page itself never loads it.
  await page.evaluate(axeSource);
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const serious = results.violations.filter((v) => ['serious', 'critical'].includes(v.impact));
  assert.deepEqual(serious.map((v) => `${v.id}: ${v.help} (${v.nodes.length})`), [], `${what}: serious accessibility violations`);
}

function log(line) { console.log(line); }

// 1. Without a session: to sign-in. A state-changing POST without a session changes nothing.
{
  const { context, page } = await person();
  const response = await page.request.post(new URL(`/ui/changes/${APPROVE}/approve`, ui).href, { form: { comment: 'x' }, maxRedirects: 0 });
  assert.equal(response.status(), 303, 'a POST without a session is sent to sign-in');
  assert.match(response.headers()['location'], /^\/ui\/login/);
  await page.goto(new URL('/ui/', ui).href);
  assert.equal(new URL(page.url()).pathname, '/authorize', 'redirected to the provider');
  await context.close();
  log('ok: a request without a session is redirected to sign-in');
}

// 2. alice: the list, her change, no approve control, a forged approval refused by policy, a
//    POST without the CSRF token refused.
const alice = await person();
await signIn(alice.page, 'alice');
await alice.page.waitForSelector(`tr[data-change="${APPROVE}"]`);
const headers = (await alice.page.request.get(new URL('/ui/', ui).href)).headers();
assert.match(headers['content-security-policy'], /script-src 'self'/);
assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline/);
await axe(alice.page, 'changes page');
// The list filters, and a second page keeps a filtered list open to watch it move.
await alice.page.selectOption('select[name=status]', 'awaiting_approval');
await alice.page.fill('input[name=requested_by]', 'bob');
await alice.page.click('form.filters button');
assert.match(await alice.page.textContent('#rows'), /No changes match/);
const list = await alice.context.newPage();
await list.goto(new URL('/ui/?device=sj-access-01&requested_by=alice', ui).href);
const row = (id) => list.locator(`tr[data-change="${id}"] .status`);
assert.match(await row(APPROVE).textContent(), /awaiting approval/);
assert.match(await list.locator(`tr[data-change="${APPROVE}"]`).textContent(), /\(normal\)/, 'the row names the template and change type');
await list.evaluate(() => { window.__notReloaded = true; });
await alice.page.goto(new URL(`/ui/changes/${APPROVE}`, ui).href);
await alice.page.waitForSelector('#step');
assert.match(await alice.page.textContent('#step'), /awaiting approval/);
assert.equal(await alice.page.locator('#approve').count(), 0, 'the requester sees no approve control');
const csrf = await alice.page.inputValue('form[action="/ui/logout"] input[name=csrf]');
{
  const forged = await alice.page.request.post(new URL(`/ui/changes/${APPROVE}/approve`, ui).href, { form: { csrf, comment: 'mine' } });
  assert.equal(forged.status(), 403, 'a hand-made approval of her own change is refused');
  assert.match(await forged.text(), /alice requested this change and cannot approve or reject it/);
  const noCsrf = await alice.page.request.post(new URL(`/ui/changes/${CANCEL}/cancel`, ui).href, { form: { confirm: 'yes' } });
  assert.equal(noCsrf.status(), 403, 'a POST without the CSRF token is refused');
  assert.match(await noCsrf.text(), /CSRF/);
}
await axe(alice.page, 'change page');
log('ok: alice sees her change, no approve control; forged approval and CSRF-less POST refused');

// Watch the page from now on, without reloading: every step the page shows.
await alice.page.evaluate(() => {
  window.__notReloaded = true;
  window.__steps = [document.querySelector('#step').textContent.trim()];
  new MutationObserver(() => {
    const step = document.querySelector('#step');
    if (step && window.__steps.at(-1) !== step.textContent.trim()) window.__steps.push(step.textContent.trim());
  }).observe(document.getElementById('live'), { childList: true, subtree: true, characterData: true });
});
const timelineBefore = await alice.page.locator('#timeline li').count();

// 3. carol: the change awaits her decision; she approves it with a comment.
const carol = await person();
await signIn(carol.page, 'carol', '/ui/approvals');
await axe(carol.page, 'approvals page');
await carol.page.click(`#pending a[href="/ui/changes/${APPROVE}"]`);
await carol.page.fill('#approve-comment', 'checked in the browser, go');
await carol.page.click('#approve');
await carol.page.waitForSelector('#decisions');
assert.match(await carol.page.textContent('#decisions'), /carol.*approved.*checked in the browser, go/s);
log('ok: carol approved from the browser; the page shows her approval');

// 4. alice's page follows the change to its end by itself.
await alice.page.waitForFunction(() => /completed/.test(document.querySelector('#step')?.textContent ?? ''), null, { timeout: LONG });
const steps = await alice.page.evaluate(() => window.__steps);
assert.equal(await alice.page.evaluate(() => window.__notReloaded), true, 'the page was not reloaded');
assert.ok(steps.length >= 3, `the page showed the steps as they came: ${steps.join(' → ')}`);
assert.ok((await alice.page.locator('#timeline li').count()) > timelineBefore, 'the timeline grew live');
assert.match(await alice.page.textContent('#decisions'), /carol/);
await alice.page.screenshot({ path: SCREENSHOT, fullPage: true });
log(`ok: alice's page followed the change live: ${steps.join(' → ')}`);
await list.waitForFunction((id) => /completed/.test(document.querySelector(`tr[data-change="${id}"] .status`)?.textContent ?? ''), APPROVE, { timeout: LONG });
assert.equal(await list.evaluate(() => window.__notReloaded), true);
log('ok: the filtered list showed the change completing without a reload');

// 5. bob (service desk) sees the change but cannot cancel, not even by hand.
const bob = await person();
await signIn(bob.page, 'bob', `/ui/changes/${CANCEL}`);
assert.equal(await bob.page.locator('#cancel').count(), 0, 'bob sees no cancel control');
{
  const bobCsrf = await bob.page.inputValue('form[action="/ui/logout"] input[name=csrf]');
  const forged = await bob.page.request.post(new URL(`/ui/changes/${CANCEL}/cancel`, ui).href, { form: { csrf: bobCsrf, confirm: 'yes' } });
  assert.equal(forged.status(), 403);
  assert.match(await forged.text(), /Permission denied/);
}
log('ok: bob cannot cancel');

// 6. alice cancels her other change, confirming first.
await alice.page.goto(new URL(`/ui/changes/${CANCEL}`, ui).href);
await alice.page.click('#cancel');
assert.match(alice.page.url(), new RegExp(`/ui/changes/${CANCEL}$`), 'unconfirmed, the browser does not submit');
await alice.page.check('input[name=confirm]');
await alice.page.click('#cancel');
await alice.page.waitForFunction(() => /canceled/i.test(document.querySelector('#step')?.textContent ?? '') || /Canceled|canceled/.test(document.querySelector('#execution')?.textContent ?? ''), null, { timeout: LONG });
log('ok: alice canceled a change after confirming');

// 7. erin (auditor) opens the change and downloads its evidence.
const erin = await person();
await signIn(erin.page, 'erin', `/ui/changes/${APPROVE}`);
const [download] = await Promise.all([erin.page.waitForEvent('download', { timeout: LONG }), erin.page.click('#evidence')]);
assert.match(download.suggestedFilename(), /\.tar\.gz$/);
const saved = `${SCREENSHOT}.evidence.tar.gz`;
await download.saveAs(saved);
assert.ok(statSync(saved).size > 1000, 'the bundle has content');
log(`ok: erin downloaded ${download.suggestedFilename()}`);

// 8. Sign out ends the session.
await erin.page.click('form[action="/ui/logout"] button');
await erin.page.waitForURL(/\/ui\/signed-out$/);
await erin.page.goto(new URL(`/ui/changes/${APPROVE}`, ui).href);
assert.equal(new URL(erin.page.url()).origin, issuer.origin, 'after sign-out the view asks to sign in again');
log('ok: sign-out ends the session');

// Nothing came from outside changeflow (the front door and its development provider).
const outside = requested.filter((u) => !u.startsWith('data:') && ![ui.origin, issuer.origin].includes(new URL(u).origin));
assert.deepEqual(outside, [], 'requests outside changeflow');
log(`ok: ${requested.length} requests, none outside changeflow`);
await browser.close();
