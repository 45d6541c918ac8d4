// common.js -- what both pages share: calls to the v1 API, the queue token
// kept across reloads, money and time formatting, and the words a fan sees
// for each error the API can give. No framework; ES module.

const STORE_KEY = 'concertd.queue';

// The fan's place in line, kept in localStorage so a reload (or a closed
// and reopened tab) keeps it: {token, userId, firstPosition}.
export function loadTicket() {
  try {
    const t = JSON.parse(localStorage.getItem(STORE_KEY) || 'null');
    return t && typeof t.token === 'string' && t.userId > 0 ? t : null;
  } catch {
    return null;
  }
}

export function saveTicket(ticket) {
  localStorage.setItem(STORE_KEY, JSON.stringify(ticket));
}

export function forgetTicket() {
  localStorage.removeItem(STORE_KEY);
}

// A random key for Idempotency-Key: one per user action, reused when the
// same action is retried after a network failure.
export function newKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// Calls the API. Never throws: resolves to {status, ok, data, code, message,
// retryAfter, date}; status 0 means the network failed.
export async function api(method, path, { body, token, key } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers['QUEUE-TOKEN'] = token;
  if (key) headers['Idempotency-Key'] = key;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    return { status: 0, ok: false, code: 'NETWORK', message: 'network error' };
  }
  let data = null;
  try {
    data = res.status === 204 ? null : await res.json();
  } catch {
    data = null;
  }
  const err = data && data.error ? data.error : {};
  const ra = Number(res.headers.get('Retry-After'));
  const date = Date.parse(res.headers.get('Date') || '');
  return {
    status: res.status,
    ok: res.ok,
    data,
    code: err.code || (res.ok ? null : 'HTTP_' + res.status),
    message: err.message || '',
    retryAfter: Number.isFinite(ra) && ra > 0 ? ra : 0,
    date: Number.isFinite(date) ? date : Date.now(),
  };
}

// The words a fan reads for an API error. `what` names the action that
// failed ("hold those seats") for the generic cases.
export function explain(r, what) {
  switch (r.code) {
    case 'NETWORK':
      return `We could not reach the ticket server to ${what}. Check your connection; we will keep trying.`;
    case 'SEAT_UNAVAILABLE':
      return 'Sorry, another fan just took one of the seats you picked. The seat map has been refreshed: please choose again.';
    case 'RESERVATION_NOT_PAYABLE':
      return 'Your hold on these seats has ended, so they were released. Please pick your seats again.';
    case 'INSUFFICIENT_BALANCE':
      return 'Your balance is not enough for these tickets. Add money to your balance below, then pay.';
    case 'PAYMENT_DECLINED':
      return 'The payment was declined. No money was taken.';
    case 'TOKEN_MISSING':
    case 'TOKEN_INVALID':
    case 'TOKEN_NOT_ACTIVE':
      return 'Your booking time is over (or you have not been let in yet). Please go back to the waiting room.';
    case 'FORBIDDEN':
      return 'This booking belongs to another fan number. Please go back to the waiting room.';
    case 'NOT_FOUND':
      return `That no longer exists, so we could not ${what}. Please start again.`;
    case 'RATE_LIMITED':
    case 'UNAVAILABLE':
    case 'GATEWAY_UNAVAILABLE':
      return `The ticket server is very busy right now and could not ${what}. Please try again in a moment.`;
    case 'INVALID_REQUEST':
      return `We could not ${what}: ${r.message}.`;
    default:
      return `Something went wrong and we could not ${what}. Please try again.`;
  }
}

// True when the error means the queue token no longer lets the fan book.
export function tokenGone(r) {
  return ['TOKEN_MISSING', 'TOKEN_INVALID', 'TOKEN_NOT_ACTIVE', 'FORBIDDEN'].includes(r.code);
}

const won = new Intl.NumberFormat('ko-KR', { style: 'currency', currency: 'KRW' });

export function formatWon(n) {
  return won.format(n);
}

// "1 h 5 min", "4 min 10 s", "12 s".
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${s} s`;
}

// "04:59" for a countdown.
export function formatClock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

export function formatWhen(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime())
    ? iso
    : d.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'short' });
}

// Shows a message in a status box (role=status or role=alert in the HTML);
// kind: 'info' | 'error' | 'ok'. An empty text hides it.
export function say(el, text, kind = 'info') {
  el.textContent = text || '';
  el.hidden = !text;
  el.dataset.kind = kind;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
