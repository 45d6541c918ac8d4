// waiting.js -- the waiting room (index.html): join the line with a fan
// number, then poll GET /api/v1/waiting-queues until ACTIVATED, and move on
// to booking.html. The token is kept in localStorage (common.js), so a
// reload resumes the same place in line.
//
// Polling is polite: the next poll comes after about a quarter of the
// server's ETA (1 s to 15 s, with jitter so fans do not poll in step), and
// after an error it backs off (2, 4, 8 ... 30 s, or the server's
// Retry-After when that is longer).
import {
  api, explain, formatDuration, forgetTicket, loadTicket, saveTicket, say,
} from './common.js';

const $ = (id) => document.getElementById(id);
const SECTIONS = ['enter', 'line', 'turn', 'expired'];
const QUEUE = '/api/v1/waiting-queues';

let ticket = loadTicket();
let lastUser = ticket ? ticket.userId : null;
let timer = null;
let failures = 0;

function show(section) {
  for (const id of SECTIONS) $(id).hidden = id !== section;
}

function stopPolling() {
  clearTimeout(timer);
  timer = null;
}

function pollIn(ms) {
  stopPolling();
  timer = setTimeout(poll, ms);
}

function politeDelay(etaSeconds) {
  const base = Math.min(15000, Math.max(1000, etaSeconds * 250));
  return Math.round(base * (0.9 + Math.random() * 0.2));
}

function backoffDelay(r) {
  failures += 1;
  const ms = Math.min(30000, 2000 * 2 ** (failures - 1));
  return Math.max(ms, r.retryAfter * 1000);
}

function renderWaiting(v) {
  show('line');
  $('who').textContent = String(ticket.userId);
  if (v.position > ticket.firstPosition) {
    ticket.firstPosition = v.position;
    saveTicket(ticket);
  }
  const first = ticket.firstPosition;
  $('position').textContent = `${v.position}`;
  $('ahead').textContent = `${Math.max(0, v.position - 1)}`;
  $('eta').textContent = v.etaSeconds > 0 ? `about ${formatDuration(v.etaSeconds)}` : 'any moment now';
  const pct = Math.round((100 * (first - v.position + 1)) / (first + 1));
  $('progress').value = Math.max(0, Math.min(99, pct));
  $('progress').textContent = `${$('progress').value}%`;
}

function renderTurn() {
  stopPolling();
  show('turn');
  $('progress').value = 100;
  $('turn-title').focus();
  setTimeout(() => location.assign('booking.html'), 1500);
}

function renderExpired(why) {
  stopPolling();
  forgetTicket();
  ticket = null;
  show('expired');
  if (why) $('expired-why').textContent = why;
  $('expired-title').focus();
}

function render(v) {
  if (v.status === 'ACTIVATED') return renderTurn();
  if (v.status === 'EXPIRED') return renderExpired();
  renderWaiting(v);
  pollIn(politeDelay(v.etaSeconds));
  return undefined;
}

async function poll() {
  if (!ticket) return;
  const r = await api('GET', QUEUE, { token: ticket.token });
  if (!ticket) return; // left meanwhile
  if (r.ok) {
    failures = 0;
    say($('line-status'), '');
    render(r.data);
    return;
  }
  if (r.code === 'TOKEN_INVALID' || r.code === 'TOKEN_MISSING') {
    renderExpired('The server no longer knows this place in line (it was dropped after the page ' +
      'stopped checking in for a while).');
    return;
  }
  const ms = backoffDelay(r);
  say($('line-status'), `${explain(r, 'check your place')} Next try in ${Math.round(ms / 1000)} s.`,
    'error');
  pollIn(ms);
}

async function enter(userId) {
  say($('problem'), '');
  const buttons = [$('enter-btn'), $('reenter')];
  buttons.forEach((b) => { b.disabled = true; });
  const r = await api('POST', QUEUE, { body: { userId } });
  buttons.forEach((b) => { b.disabled = false; });
  if (!r.ok) {
    say($('problem'), explain(r, 'put you in line'), 'error');
    return;
  }
  lastUser = userId;
  failures = 0;
  ticket = { token: r.data.token, userId, firstPosition: Math.max(1, r.data.position) };
  saveTicket(ticket);
  render(r.data);
  if (!$('line').hidden) $('line-title').focus();
}

$('enter').addEventListener('submit', (e) => {
  e.preventDefault();
  const raw = $('user').value.trim();
  if (!/^[0-9]{1,18}$/.test(raw) || Number(raw) < 1) {
    say($('problem'), 'Please type your fan number: a whole number, 1 or more.', 'error');
    $('user').setAttribute('aria-invalid', 'true');
    $('user').focus();
    return;
  }
  $('user').removeAttribute('aria-invalid');
  enter(Number(raw));
});

$('reenter').addEventListener('click', () => {
  if (lastUser) enter(lastUser);
  else show('enter');
});

$('leave').addEventListener('click', async () => {
  const t = ticket;
  stopPolling();
  ticket = null;
  forgetTicket();
  show('enter');
  if (t) await api('DELETE', QUEUE, { token: t.token });
  $('user').focus();
});

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && ticket && timer) pollIn(0);
});

if (ticket) {
  show('line');
  $('who').textContent = String(ticket.userId);
  say($('line-status'), 'Checking your place in line…');
  poll();
} else {
  show('enter');
}
