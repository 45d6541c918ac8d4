// fan.mjs -- walks fans through the pages of a running concertd in headless
// chromium (playwright-core, Debian's /usr/bin/chromium) and checks what
// they would see. Started by tests/integration/test_web.py; see docs/web.md.
//
//   node tests/browser/fan.mjs SCENARIO BASE_URL ARTIFACT_DIR
//
// Scenarios:
//   journey  phone-sized: a fan waits in line behind another (max_active 1),
//            is let in, picks two seats with the keyboard, holds them, is
//            refused for a short balance, charges it, pays, sees the
//            confirmation. Accessibility checks on the way.
//   race     desktop: two fans pick the same seat; the second to hold is
//            told in words, the map shows the seat taken, and they book
//            another seat.
//   expired  a fan whose token ran out (--queue-active-ttl 3s) is told so in
//            the waiting room and joins the line again.
//
// Prints one JSON line with what happened on success and exits 0; prints
// the failure and exits 1 (a screenshot of the failing page is saved).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [scenario, base, outDir] = process.argv.slice(2);
if (!scenario || !base || !outDir) {
  console.error('usage: node fan.mjs journey|race|expired BASE_URL ARTIFACT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
const DESKTOP = { viewport: { width: 1280, height: 900 } };
const pages = [];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function shot(page, name) {
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

async function apiCall(method, path, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers['QUEUE-TOKEN'] = token;
  const r = await fetch(base + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

// A page that fails the run on any script error or CSP violation.
async function newFan(browser, options, name) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused API call logs "Failed to load resource: ... 409"; that is
    // the page working. Anything else logged as an error is a bug.
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) {
      page.problems.push(`${name}: console error: ${m.text()}`);
    }
  });
  pages.push([name, page]);
  return page;
}

function noProblems() {
  const all = pages.flatMap(([, p]) => p.problems);
  check(all.length === 0, `no script errors or CSP violations:\n${all.join('\n')}`);
}

// ---- accessibility checks ----------------------------------------------------

// Every visible form field has a label, every visible button a name.
async function checkLabels(page, where) {
  const bad = await page.evaluate(() => {
    const out = [];
    const visible = (el) => el.offsetParent !== null || el.getClientRects().length > 0;
    for (const el of document.querySelectorAll('input, select, textarea, progress')) {
      if (visible(el) && !(el.labels && el.labels.length) && !el.getAttribute('aria-label')) out.push(el.outerHTML);
    }
    for (const el of document.querySelectorAll('button, a[href]')) {
      const name = (el.getAttribute('aria-label') || el.textContent || '').trim();
      if (visible(el) && !name) out.push(el.outerHTML);
    }
    return out;
  });
  check(bad.length === 0, `${where}: unlabelled controls: ${bad.join(' ')}`);
}

// Text of the given elements against their (first opaque) background: at
// least 4.5:1 (WCAG AA) for everything checked.
async function checkContrast(page, selector, where) {
  const worst = await page.evaluate((sel) => {
    const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const bg = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const cs = getComputedStyle(e);
        if (cs.backgroundImage.includes('gradient')) { // striped: the darker stripe counts
          const stops = cs.backgroundImage.match(/rgba?\([^)]*\)/g).map(rgb);
          return stops.sort((a, b) => lum(a) - lum(b))[0];
        }
        const c = rgb(cs.backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    let min = { ratio: 99, html: '' };
    for (const el of document.querySelectorAll(sel)) {
      if (!el.textContent.trim() || !el.getClientRects().length) continue;
      const a = lum(rgb(getComputedStyle(el).color).slice(0, 3));
      const b = lum(bg(el));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < min.ratio) min = { ratio, html: el.outerHTML.slice(0, 160) };
    }
    return min;
  }, selector);
  check(worst.ratio >= 4.5, `${where}: contrast ${worst.ratio.toFixed(2)} < 4.5 for ${worst.html}`);
}

// The focused element shows a focus ring.
async function checkFocusVisible(page, where) {
  const ring = await page.evaluate(() => {
    const cs = getComputedStyle(document.activeElement);
    return { style: cs.outlineStyle, width: parseFloat(cs.outlineWidth), tag: document.activeElement.tagName };
  });
  check(ring.style !== 'none' && ring.width >= 2, `${where}: focus not visible (${JSON.stringify(ring)})`);
}

// Nothing is wider than the viewport (no sideways scrolling on a phone).
async function checkFits(page, where) {
  const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(over <= 0, `${where}: page is ${over}px wider than the viewport`);
}

// ---- steps ------------------------------------------------------------------

async function joinLine(page, userId) {
  await page.goto(base + '/');
  await checkLabels(page, 'waiting room');
  const field = page.getByLabel('Your fan number');
  await field.focus();
  await checkFocusVisible(page, 'fan number field');
  await page.keyboard.type(String(userId));
  await page.keyboard.press('Enter');
}

async function waitForBooking(page) {
  await page.waitForURL(/\/booking\.html$/, { timeout: 20000 });
  await page.locator('#step-concert').waitFor({ state: 'visible' });
}

async function openFirstSession(page) {
  await page.locator('#concerts button').first().click();
  await page.locator('#step-session').waitFor({ state: 'visible' });
  await page.locator('#sessions button:not([disabled])').first().click();
  await page.locator('#step-seats').waitFor({ state: 'visible' });
  await page.locator('#map button.seat').first().waitFor();
}

function seat(page, n) {
  return page.locator(`#map button.seat[data-number="${n}"]`);
}

async function countdownSeconds(page) {
  const t = await page.locator('#countdown').textContent();
  const m = /^(\d\d):(\d\d)$/.exec(t.trim());
  check(m, `countdown reads mm:ss, got ${JSON.stringify(t)}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

async function journey(browser) {
  // Someone else is being served: with max_active 1 the fan has to wait.
  const blocker = await apiCall('POST', '/api/v1/waiting-queues', { userId: 900 });
  check(blocker.status === 201, `blocker entered: ${JSON.stringify(blocker)}`);
  for (let i = 0; i < 50; i++) {
    const s = await apiCall('GET', '/api/v1/waiting-queues', null, blocker.json.token);
    if (s.json.status === 'ACTIVATED') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const page = await newFan(browser, PHONE, 'fan');
  await joinLine(page, 7);
  await page.locator('#line').waitFor({ state: 'visible' });
  await page.locator('#position').filter({ hasText: /^1$/ }).waitFor();
  check((await page.locator('#ahead').textContent()) === '0', 'nobody ahead of the fan');
  check(/wait|moment/i.test(await page.locator('#eta').textContent()) ||
    /\d/.test(await page.locator('#eta').textContent()), 'an ETA is shown');
  const progress = await page.locator('#progress').getAttribute('value');
  check(Number(progress) > 0 && Number(progress) < 100, `progress bar part-way, got ${progress}`);
  await checkFits(page, 'waiting room');
  await checkContrast(page, 'p, dt, dd, button, label, h1, h2', 'waiting room');
  const waitingShot = await shot(page, 'waiting-room');

  // A reload keeps the same place in line.
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('concertd.queue')).token);
  await page.reload();
  await page.locator('#position').filter({ hasText: /^1$/ }).waitFor();
  const token2 = await page.evaluate(() => JSON.parse(localStorage.getItem('concertd.queue')).token);
  check(token === token2, 'the token survives a reload');

  // The fan ahead leaves: the page moves on by itself.
  const left = await apiCall('DELETE', '/api/v1/waiting-queues', null, blocker.json.token);
  check(left.status === 204, `blocker left: ${left.status}`);
  await waitForBooking(page);
  await checkLabels(page, 'concert list');
  await openFirstSession(page);
  await checkFits(page, 'seat map');
  await checkLabels(page, 'seat map');
  await checkContrast(page, '#map button.seat, .legend li, .picked, h2, button', 'seat map');

  // Keyboard only: Tab from the heading into the map, arrow right, pick two.
  const free = page.locator('#map button.seat:not([disabled])');
  const first = Number(await free.first().getAttribute('data-number'));
  for (let i = 0; i < 10; i++) {
    if (await page.evaluate(() => document.activeElement.classList.contains('seat'))) break;
    await page.keyboard.press('Tab');
  }
  check(Number(await page.evaluate(() => document.activeElement.dataset.number)) === first,
    'Tab reaches the first free seat');
  await checkFocusVisible(page, 'seat');
  await page.keyboard.press('Space');
  await page.keyboard.press('ArrowRight');
  const second = Number(await page.evaluate(() => document.activeElement.dataset.number));
  check(second > first, `ArrowRight moves to the next free seat (${first} -> ${second})`);
  await page.keyboard.press('Enter');
  check((await seat(page, first).getAttribute('aria-pressed')) === 'true', 'Space picks a seat');
  check((await seat(page, second).getAttribute('aria-pressed')) === 'true', 'Enter picks a seat');
  check(/Picked 2 of/.test(await page.locator('#picked').textContent()), 'the pick is summed up');

  await page.getByRole('button', { name: 'Hold these seats' }).click();
  await page.locator('#step-pay').waitFor({ state: 'visible' });
  check(await page.locator('#map').isVisible(), 'the seat map stays in view during payment');
  check(await seat(page, first).evaluate((b) => b.classList.contains('held')), 'held seats marked on the map');
  const t1 = await countdownSeconds(page);
  check(t1 > 100 && t1 <= 300, `hold countdown near 5 min, got ${t1}`);
  await page.waitForTimeout(1300);
  const t2 = await countdownSeconds(page);
  check(t2 < t1, `countdown runs (${t1} -> ${t2})`);
  await checkFits(page, 'payment');
  const holdShot = await shot(page, 'seat-map-hold');

  // Balance 0: paying is refused in words, the charge form offers the shortfall.
  await page.getByRole('button', { name: 'Pay with balance' }).click();
  await page.locator('#problem').filter({ hasText: 'balance is not enough' }).waitFor();
  await page.locator('#charge').waitFor({ state: 'visible' });
  await checkLabels(page, 'charge form');
  const amount = Number(await page.getByLabel('Add money to your balance (won)').inputValue());
  check(amount > 0, `the shortfall is filled in, got ${amount}`);
  await page.getByRole('button', { name: 'Add to balance' }).click();
  await page.locator('#problem').filter({ hasText: 'Added' }).waitFor();
  await page.getByRole('button', { name: 'Pay with balance' }).click();
  await page.locator('#step-done').waitFor({ state: 'visible' });
  const reservation = (await page.locator('#done-reservation').textContent()).replace('#', '');
  const seatsText = await page.locator('#done-seats').textContent();
  check(/^\d+$/.test(reservation), `a reservation number is shown, got ${reservation}`);
  check(seatsText.split(',').length === 2, `both seats on the confirmation: ${seatsText}`);
  check((await page.locator('#done-amount').textContent()).replace(/\D/g, '') === String(amount),
    'paid exactly what was charged (balance was 0)');
  await checkFits(page, 'confirmation');
  await checkContrast(page, '#step-done dt, #step-done dd, #step-done h2', 'confirmation');
  const doneShot = await shot(page, 'confirmation');
  noProblems();
  return { userId: 7, reservationId: Number(reservation), amount, seats: [first, second],
    screenshots: [waitingShot, holdShot, doneShot] };
}

async function race(browser) {
  const a = await newFan(browser, DESKTOP, 'fan A');
  const b = await newFan(browser, DESKTOP, 'fan B');
  for (const [p, user] of [[a, 21], [b, 22]]) {
    await joinLine(p, user);
    await waitForBooking(p);
    await openFirstSession(p);
  }
  const n = Number(await a.locator('#map button.seat:not([disabled])').first().getAttribute('data-number'));
  await seat(a, n).click();
  await seat(b, n).click();
  await a.getByRole('button', { name: 'Hold these seats' }).click();
  await a.locator('#step-pay').waitFor({ state: 'visible' });
  await b.getByRole('button', { name: 'Hold these seats' }).click();
  await b.locator('#problem').filter({ hasText: 'another fan just took' }).waitFor();
  check(await seat(b, n).isDisabled(), 'the lost seat shows as taken after the refresh');
  check(/taken/.test(await seat(b, n).getAttribute('aria-label')), 'its label says taken');
  check((await b.locator('#picked').textContent()).startsWith('No seats'), 'the lost pick is cleared');
  const loserShot = await shot(b, 'race-seat-taken');
  // B recovers: another seat holds fine.
  const other = Number(await b.locator('#map button.seat:not([disabled])').first().getAttribute('data-number'));
  check(other !== n, 'another seat is free');
  await seat(b, other).click();
  await b.getByRole('button', { name: 'Hold these seats' }).click();
  await b.locator('#step-pay').waitFor({ state: 'visible' });
  noProblems();
  return { contested: n, winnerHeld: n, loserHeld: other, screenshots: [loserShot] };
}

async function expired(browser) {
  const page = await newFan(browser, PHONE, 'fan');
  await joinLine(page, 31);
  await page.locator('#turn').waitFor({ state: 'visible' });
  const old = await page.evaluate(() => JSON.parse(localStorage.getItem('concertd.queue')).token);
  // The booking window (--queue-active-ttl 3s) runs out on the booking
  // page (or before it asks): it says so.
  await page.waitForURL(/\/booking\.html$/);
  await page.locator('#gate').waitFor({ state: 'visible', timeout: 10000 });
  check(/over|ended/.test(await page.locator('#gate-why').textContent()), 'the booking page says time is over');
  // A waiting room that still has the old token explains EXPIRED.
  await page.evaluate((t) => localStorage.setItem('concertd.queue',
    JSON.stringify({ token: t, userId: 31, firstPosition: 1 })), old);
  await page.goto(base + '/');
  await page.locator('#expired').waitFor({ state: 'visible' });
  check(/join the line again/i.test(await page.locator('#expired').textContent()), 'EXPIRED offers to join again');
  await checkLabels(page, 'expired');
  const expiredShot = await shot(page, 'waiting-room-expired');
  await page.getByRole('button', { name: 'Join the line again' }).click();
  await page.waitForFunction((t) => {
    const s = JSON.parse(localStorage.getItem('concertd.queue') || 'null');
    return s && s.token !== t;
  }, old);
  noProblems();
  return { screenshots: [expiredShot] };
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
let code = 0;
try {
  const run = { journey, race, expired }[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  const result = await run(browser);
  console.log(JSON.stringify({ scenario, ok: true, ...result }));
} catch (e) {
  code = 1;
  console.error(`${scenario}: ${e.stack || e}`);
  for (const [name, p] of pages) {
    await p.screenshot({ path: join(outDir, `FAILED-${scenario}-${name.replace(/\W+/g, '-')}.png`), fullPage: true })
      .catch(() => {});
    if (p.problems.length) console.error(p.problems.join('\n'));
  }
} finally {
  await browser.close();
}
process.exit(code);
