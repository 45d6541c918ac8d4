// booking.js -- the booking page (booking.html): concert -> date -> seat map
// -> hold with a countdown -> pay with balance (charging it when short) ->
// confirmation. Needs the ACTIVATED queue token the waiting room stored.
//
// The seat map: the API lists the *available* seats of a session (keyset
// pages, followed to the end); every other number from 1 to the session's
// size is shown as taken. Seats sit in rows of ROW_LENGTH by seat number.
// After any answer that says the map is stale (seat taken, hold ended) the
// map is read again.
import {
  api, explain, formatClock, formatWhen, formatWon, forgetTicket, loadTicket, newKey, say,
  tokenGone,
} from './common.js';

const $ = (id) => document.getElementById(id);
const STEPS = ['gate', 'step-concert', 'step-session', 'step-seats', 'step-pay', 'step-done'];
const PAGE = 1000; // seats per request (the API's maximum)
const MAX_PAGES = 20; // 20,000 seats: more would not fit a page anyway
const GRADES = 6; // colour classes g0..g5 in app.css

const maxSeats = Number(document.body.dataset.maxSeats) || 4;
const ticket = loadTicket();
const st = {
  concert: null, session: null, seats: new Map(), size: 0, grades: new Map(),
  picked: new Map(), hold: null, holdEnd: 0, payKey: null, chargeKey: null, balance: null,
};
let holdTimer = null;
let windowTimer = null;

// Shows the given steps (the seat map stays in view under the payment
// step, read-only) and focuses the last one's heading.
function show(...steps) {
  for (const id of STEPS) $(id).hidden = !steps.includes(id);
  const h = $(steps[steps.length - 1]).querySelector('h2');
  if (h) h.focus();
  const paying = steps.includes('step-pay');
  $('map').inert = paying;
  $('seat-actions').hidden = paying;
  $('map-help').hidden = paying;
}

function problem(text, kind = 'error') {
  say($('problem'), text, kind);
}

function gate(why) {
  clearInterval(holdTimer);
  clearInterval(windowTimer);
  $('window').hidden = true;
  if (why) $('gate-why').textContent = why;
  problem('');
  show('gate');
}

// Handles the errors every protected call shares; true when handled.
function common(r, what) {
  if (tokenGone(r)) {
    gate(explain(r, what));
    return true;
  }
  problem(explain(r, what));
  return false;
}

function rowLength(size) {
  return size <= 100 ? 10 : 20;
}

function rowName(i) {
  let s = '';
  for (let n = i + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(65 + ((n - 1) % 26)) + s;
  return s;
}

function seatName(number) {
  const len = rowLength(st.size);
  return `${rowName(Math.floor((number - 1) / len))}${((number - 1) % len) + 1}`;
}

// ---- the booking window (the token's activeUntil) -------------------------

// Counts down to activeUntil. The clocks (the server's Date and the fan's)
// only agree to about a second, so at zero the page asks the server
// before it says the time is over.
function startWindow(activeUntil, serverDate) {
  clearInterval(windowTimer);
  const end = Date.now() + (Date.parse(activeUntil) - serverDate);
  if (!Number.isFinite(end)) return;
  const tick = () => {
    const left = (end - Date.now()) / 1000;
    $('window').hidden = false;
    $('window').textContent = `Booking time left: ${formatClock(left)}`;
    if (left <= 0) {
      clearInterval(windowTimer);
      confirmWindowOver();
    }
  };
  tick();
  windowTimer = setInterval(tick, 1000);
}

async function confirmWindowOver() {
  const r = await api('GET', '/api/v1/waiting-queues', { token: ticket.token });
  if (!$('step-done').hidden) return; // paid meanwhile: the token ended with the payment
  if (r.ok && r.data.status === 'ACTIVATED' && r.data.activeUntil) {
    setTimeout(() => startWindow(r.data.activeUntil, r.date), 1000);
  } else if (r.ok || tokenGone(r)) {
    forgetTicket();
    gate('Your booking time is over. Please join the waiting room again.');
  } else {
    setTimeout(confirmWindowOver, 2000); // no answer: ask again
  }
}

// ---- 1. concerts, 2. sessions ----------------------------------------------

function choice(list, label, detail, onPick, disabled) {
  const li = document.createElement('li');
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'choice';
  b.disabled = !!disabled;
  const strong = document.createElement('strong');
  strong.textContent = label;
  const span = document.createElement('span');
  span.textContent = detail;
  b.append(strong, span);
  b.addEventListener('click', onPick);
  li.append(b);
  list.append(li);
}

async function loadConcerts() {
  const r = await api('GET', '/api/v1/concerts');
  if (!r.ok) return common(r, 'load the concerts');
  const list = $('concerts');
  list.replaceChildren();
  for (const c of r.data.concerts) choice(list, c.title, c.venue, () => loadSessions(c));
  if (!r.data.concerts.length) problem('No concerts are on sale right now.', 'info');
  show('step-concert');
  return true;
}

async function loadSessions(concert) {
  st.concert = concert;
  problem('');
  const r = await api('GET', `/api/v1/concerts/${concert.concertId}/sessions`, { token: ticket.token });
  if (!r.ok) return common(r, 'load the dates');
  $('session-concert').textContent = `${concert.title} · ${concert.venue}`;
  const list = $('sessions');
  list.replaceChildren();
  for (const s of r.data.sessions) {
    const left = s.availableSeats > 0 ? `${s.availableSeats} of ${s.totalSeats} seats left` : 'Sold out';
    choice(list, formatWhen(s.startsAt), left, () => openSession(s), s.availableSeats <= 0);
  }
  show('step-session');
  return true;
}

// ---- 3. the seat map -------------------------------------------------------

async function fetchSeats(session) {
  const seats = new Map();
  let after = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const q = `limit=${PAGE}${after === null ? '' : `&after=${encodeURIComponent(after)}`}`;
    const r = await api('GET',
      `/api/v1/concerts/${st.concert.concertId}/sessions/${session.sessionId}/seats?${q}`,
      { token: ticket.token });
    if (!r.ok) return r;
    for (const s of r.data.availableSeats) seats.set(s.seatNumber, s);
    after = r.data.nextCursor;
    if (after === null || after === undefined) break;
  }
  return { ok: true, seats };
}

async function openSession(session) {
  st.session = session;
  st.picked.clear();
  problem('');
  if (await refreshMap()) show('step-seats');
}

// Reads the session's available seats again and redraws the map; keeps
// picked seats that are still free. False when the read failed.
async function refreshMap() {
  const r = await fetchSeats(st.session);
  if (!r.ok) {
    common(r, 'load the seat map');
    return false;
  }
  st.seats = r.seats;
  let top = st.session.totalSeats;
  for (const n of st.seats.keys()) top = Math.max(top, n);
  st.size = top;
  for (const [id, s] of st.picked) if (!st.seats.has(s.seatNumber)) st.picked.delete(id);
  const prices = new Map();
  for (const s of st.seats.values()) prices.set(s.grade, Math.max(prices.get(s.grade) || 0, s.price));
  const order = [...prices].sort((a, b) => b[1] - a[1]);
  for (const [g] of order) if (!st.grades.has(g)) st.grades.set(g, st.grades.size % GRADES);
  renderLegend(order);
  renderMap();
  $('seats-session').textContent =
    `${st.concert.title} · ${formatWhen(st.session.startsAt)} · ${st.seats.size} seats left`;
  return true;
}

function renderLegend(order) {
  const legend = $('legend');
  legend.replaceChildren();
  for (const [grade, price] of order) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = `swatch g${st.grades.get(grade)}`;
    sw.setAttribute('aria-hidden', 'true');
    li.append(sw, `${grade}: ${formatWon(price)}`);
    legend.append(li);
  }
  const taken = document.createElement('li');
  const sw = document.createElement('span');
  sw.className = 'swatch taken';
  sw.setAttribute('aria-hidden', 'true');
  taken.append(sw, 'Taken');
  legend.append(taken);
}

function renderMap() {
  const map = $('map');
  const len = rowLength(st.size);
  map.style.setProperty('--cols', String(len));
  map.replaceChildren();
  for (let row = 0; row * len < st.size; row++) {
    const line = document.createElement('div');
    line.className = 'seat-row';
    line.setAttribute('role', 'group');
    line.setAttribute('aria-label', `Row ${rowName(row)}`);
    const label = document.createElement('span');
    label.className = 'row-label';
    label.setAttribute('aria-hidden', 'true');
    label.textContent = rowName(row);
    line.append(label);
    for (let n = row * len + 1; n <= Math.min(st.size, (row + 1) * len); n++) line.append(seatButton(n));
    map.append(line);
  }
  updatePicked();
}

function seatButton(n) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'seat';
  b.dataset.number = String(n);
  b.textContent = String(((n - 1) % rowLength(st.size)) + 1);
  const s = st.seats.get(n);
  if (!s) {
    b.classList.add('taken');
    b.disabled = true;
    b.setAttribute('aria-label', `Seat ${seatName(n)}, taken`);
    return b;
  }
  b.classList.add(`g${st.grades.get(s.grade)}`);
  b.dataset.seatId = String(s.seatId);
  b.setAttribute('aria-label', `Seat ${seatName(n)}, ${s.grade}, ${formatWon(s.price)}`);
  b.setAttribute('aria-pressed', String(st.picked.has(s.seatId)));
  b.addEventListener('click', () => toggle(s, b));
  return b;
}

function toggle(seat, button) {
  if (st.picked.has(seat.seatId)) {
    st.picked.delete(seat.seatId);
  } else if (st.picked.size >= maxSeats) {
    problem(`You can hold up to ${maxSeats} seats at a time.`, 'info');
    return;
  } else {
    st.picked.set(seat.seatId, seat);
  }
  problem('');
  button.setAttribute('aria-pressed', String(st.picked.has(seat.seatId)));
  updatePicked();
}

function updatePicked() {
  const seats = [...st.picked.values()].sort((a, b) => a.seatNumber - b.seatNumber);
  const total = seats.reduce((t, s) => t + s.price, 0);
  $('picked').textContent = seats.length
    ? `Picked ${seats.length} of ${maxSeats}: ${seats.map((s) => seatName(s.seatNumber)).join(', ')}` +
      ` · Total ${formatWon(total)}`
    : 'No seats picked yet.';
  $('hold').disabled = seats.length === 0;
}

// Arrow keys move between the free seats of the map; Home and End jump to
// the first and last. Enter and Space pick (the seats are buttons).
function onMapKey(e) {
  const seats = [...$('map').querySelectorAll('button.seat:not(:disabled)')];
  const i = seats.indexOf(document.activeElement);
  if (i < 0) return;
  const n = Number(seats[i].dataset.number);
  const len = rowLength(st.size);
  const byNumber = (m) => seats.find((b) => Number(b.dataset.number) === m);
  let next = null;
  if (e.key === 'ArrowRight') next = seats[i + 1];
  else if (e.key === 'ArrowLeft') next = seats[i - 1];
  else if (e.key === 'ArrowDown') next = byNumber(n + len);
  else if (e.key === 'ArrowUp') next = byNumber(n - len);
  else if (e.key === 'Home') next = seats[0];
  else if (e.key === 'End') next = seats[seats.length - 1];
  else return;
  e.preventDefault();
  if (next) next.focus();
}

// ---- 4. hold and pay -------------------------------------------------------

async function hold() {
  const seatIds = [...st.picked.keys()];
  $('hold').disabled = true;
  const r = await api('POST',
    `/api/v1/concerts/${st.concert.concertId}/sessions/${st.session.sessionId}/reservations`,
    { token: ticket.token, body: { userId: ticket.userId, seatIds } });
  if (r.ok) {
    st.hold = r.data;
    st.holdEnd = Date.now() + (Date.parse(r.data.expiresAt) - r.date);
    st.payKey = null;
    problem('');
    showPay();
    return;
  }
  $('hold').disabled = false;
  if (r.code === 'SEAT_UNAVAILABLE') {
    await refreshMap();
    problem(explain(r, 'hold those seats'));
    return;
  }
  common(r, 'hold those seats');
}

function showPay() {
  const h = st.hold;
  const list = $('held-seats');
  list.replaceChildren();
  for (const s of [...h.seats].sort((a, b) => a.seatNumber - b.seatNumber)) {
    const li = document.createElement('li');
    li.textContent = `Seat ${seatName(s.seatNumber)} · ${s.grade} · ${formatWon(s.price)}`;
    list.append(li);
  }
  $('held-total').textContent = formatWon(h.totalPrice);
  $('charge').hidden = true;
  $('pay').disabled = false;
  markHeld(h.seats);
  show('step-seats', 'step-pay');
  clearInterval(holdTimer);
  let lastMinute = null;
  const tick = () => {
    const left = (st.holdEnd - Date.now()) / 1000;
    $('countdown').textContent = formatClock(left);
    const minute = Math.ceil(left / 60);
    if (minute !== lastMinute && minute <= 2 && left > 0) {
      $('countdown-note').textContent = `${minute} minute${minute === 1 ? '' : 's'} left to pay.`;
    }
    lastMinute = minute;
    if (left <= 0) holdEnded('Your hold on these seats has ended, so they were released. Please pick your seats again.');
  };
  tick();
  holdTimer = setInterval(tick, 250);
  loadBalance();
}

// Marks the held seats on the (now read-only) map.
function markHeld(seats) {
  for (const s of seats) {
    const b = $('map').querySelector(`button.seat[data-number="${s.seatNumber}"]`);
    if (!b) continue;
    b.classList.add('held');
    b.setAttribute('aria-label', `Seat ${seatName(s.seatNumber)}, ${s.grade}, held for you`);
  }
}

async function holdEnded(text) {
  clearInterval(holdTimer);
  st.hold = null;
  st.picked.clear();
  if (await refreshMap()) show('step-seats');
  problem(text);
}

async function loadBalance() {
  const r = await api('GET', `/api/v1/users/${ticket.userId}/balance`);
  if (!r.ok) {
    $('balance').textContent = 'unknown right now';
    return;
  }
  st.balance = r.data.balance;
  $('balance').textContent = formatWon(st.balance);
  if (st.hold && st.balance < st.hold.totalPrice) offerCharge();
}

function offerCharge() {
  const short = st.hold.totalPrice - (st.balance || 0);
  $('charge').hidden = false;
  $('amount-hint').textContent = `You need ${formatWon(Math.max(0, short))} more to pay for these seats.`;
  if (!$('amount').value && short > 0) $('amount').value = String(short);
}

async function pay() {
  if (!st.hold) return;
  st.payKey = st.payKey || newKey();
  $('pay').disabled = true;
  const r = await api('POST', '/api/v1/payments', {
    token: ticket.token,
    key: st.payKey,
    body: { userId: ticket.userId, reservationId: st.hold.reservationId, method: 'balance' },
  });
  $('pay').disabled = false;
  if (r.status === 0) {
    problem(explain(r, 'take the payment') + ' Pressing Pay again is safe: you will not be charged twice.');
    return; // the same key is reused on the next press
  }
  st.payKey = null;
  if (r.status === 201) {
    done(r.data);
    return;
  }
  if (r.status === 202) {
    problem('Your payment is being confirmed. This page will update by itself.', 'info');
    waitForConfirmation(r.data);
    return;
  }
  if (r.code === 'INSUFFICIENT_BALANCE') {
    problem(explain(r, 'take the payment'));
    await loadBalance();
    offerCharge();
    $('amount').focus();
    return;
  }
  if (r.code === 'RESERVATION_NOT_PAYABLE') {
    holdEnded(explain(r, 'take the payment'));
    return;
  }
  common(r, 'take the payment');
}

async function waitForConfirmation(payment) {
  for (let i = 0; i < 60 && st.hold; i++) {
    await new Promise((res) => setTimeout(res, 2000));
    const r = await api('GET', `/api/v1/reservations/${st.hold.reservationId}`, { token: ticket.token });
    if (r.ok && r.data.status === 'CONFIRMED') {
      done({ ...payment, status: 'COMPLETED' });
      return;
    }
    if (r.ok && r.data.status === 'HELD') {
      problem('The payment did not go through. No money was taken; you can try again.');
      return;
    }
  }
}

async function charge(e) {
  e.preventDefault();
  const raw = $('amount').value.trim().replace(/,/g, '');
  if (!/^[0-9]{1,15}$/.test(raw) || Number(raw) < 1) {
    problem('Please type the amount to add in won: a whole number, 1 or more.');
    $('amount').setAttribute('aria-invalid', 'true');
    $('amount').focus();
    return;
  }
  $('amount').removeAttribute('aria-invalid');
  st.chargeKey = st.chargeKey || newKey();
  $('charge-btn').disabled = true;
  const r = await api('POST', `/api/v1/users/${ticket.userId}/balance/charge`,
    { key: st.chargeKey, body: { amount: Number(raw) } });
  $('charge-btn').disabled = false;
  if (r.status === 0) {
    problem(explain(r, 'add to your balance') + ' Trying again is safe: you will not be charged twice.');
    return;
  }
  st.chargeKey = null;
  if (!r.ok) {
    problem(explain(r, 'add to your balance'));
    return;
  }
  st.balance = r.data.balance;
  $('balance').textContent = formatWon(st.balance);
  $('amount').value = '';
  problem(`Added ${formatWon(Number(raw))}. Your balance is now ${formatWon(st.balance)}.`, 'ok');
  if (st.hold && st.balance >= st.hold.totalPrice) {
    $('charge').hidden = true;
    $('pay').focus();
  } else {
    offerCharge();
  }
}

async function cancelHold() {
  if (!st.hold) return;
  const r = await api('DELETE', `/api/v1/reservations/${st.hold.reservationId}`, { token: ticket.token });
  if (!r.ok && r.status !== 404) {
    common(r, 'release the seats');
    return;
  }
  holdEnded('');
}

function done(p) {
  clearInterval(holdTimer);
  clearInterval(windowTimer);
  $('window').hidden = true;
  const h = st.hold;
  st.hold = null;
  forgetTicket(); // a payment ends the token: buying more means a new place in line
  $('done-concert').textContent = `${st.concert.title} · ${st.concert.venue}`;
  $('done-date').textContent = formatWhen(st.session.startsAt);
  $('done-seats').textContent = [...h.seats].sort((a, b) => a.seatNumber - b.seatNumber)
    .map((s) => `${seatName(s.seatNumber)} (${s.grade})`).join(', ');
  $('done-amount').textContent = formatWon(p.amount);
  $('done-reservation').textContent = `#${p.reservationId}`;
  $('done-payment').textContent = `#${p.paymentId}`;
  $('done-at').textContent = p.paidAt ? formatWhen(p.paidAt) : 'just now';
  problem('');
  show('step-done');
}

// ---- start -----------------------------------------------------------------

async function start() {
  $('max-seats').textContent = String(maxSeats);
  if (!ticket) {
    gate('Booking is open to fans whose turn has come in the waiting room. Join the line first.');
    return;
  }
  const r = await api('GET', '/api/v1/waiting-queues', { token: ticket.token });
  if (!r.ok) {
    if (tokenGone(r)) {
      forgetTicket();
      gate('Your place in line has ended. Please join the waiting room again.');
    } else {
      problem(explain(r, 'check your place in line'));
    }
    return;
  }
  if (r.data.status === 'WAITING') {
    location.replace('./');
    return;
  }
  if (r.data.status !== 'ACTIVATED') {
    forgetTicket();
    gate('Your booking time is over. Please join the waiting room again.');
    return;
  }
  if (r.data.activeUntil) startWindow(r.data.activeUntil, r.date);
  await loadConcerts();
}

$('map').addEventListener('keydown', onMapKey);
$('hold').addEventListener('click', hold);
$('pay').addEventListener('click', pay);
$('charge').addEventListener('submit', charge);
$('cancel').addEventListener('click', cancelHold);
$('back-concerts').addEventListener('click', () => show('step-concert'));
$('back-sessions').addEventListener('click', () => loadSessions(st.concert));
start();
