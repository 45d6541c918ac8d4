// classic_flow.js -- scenario 3 (the second report, classic API): VUS
// users (100) for DURATION (1m) go through the whole flow, again and again:
// take a token, poll its status until `true`, list concerts, schedules and
// seats, reserve 1-2 seats at random, pay the reservation's price.
//
//   concertd seed --users 100 --balance 1000000000000 --seats-per-session 10000
//   concertd serve
//   k6 run loadtest/k6/classic_flow.js
//
// User n is VU n: paying expires the user's token, so each iteration enters
// the line again. Odd users send userId as a decimal string, even ones as a
// number, as the reference clients do both. The status body is compared raw
// (`true`), as that client does. A reservation that meets a seat taken in
// the meantime (409) is retried with a fresh seat list, up to 3 times.
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';

import { THINK, call, num, oneOf, parsed, pick, str, thresholds } from './lib.js';

const POLL = num('POLL', 1);
const TIMEOUT = num('TIMEOUT', 120); // seconds a user waits for its token at most

const paid = new Counter('bookings_paid');

export const options = {
  scenarios: {
    flow: { executor: 'constant-vus', vus: num('VUS', 100), duration: str('DURATION', '1m') },
  },
  thresholds: thresholds(20, { bookings_paid: ['count>0'] }),
};

function waitActive(userId) {
  const deadline = Date.now() + TIMEOUT * 1000;
  for (;;) {
    const r = call('GET', `/api/token/status/${userId}`, null, { name: 'status' });
    if (!check(r, { 'status is true or false': (x) => x.body === 'true' || x.body === 'false' })) return false;
    if (r.body === 'true') return true;
    if (Date.now() >= deadline) return false;
    sleep(POLL);
  }
}

function reserveAndPay(who, concertId, scheduleId) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const seats = parsed(call('GET', `/api/concerts/seats/${scheduleId}`, null, { name: 'seats' }));
    if (!check(seats, { 'seats are an array': (x) => Array.isArray(x) })) return;
    if (seats.length === 0) return; // sold out
    const seatIdList = pick(
      seats.map((x) => x.seatId),
      1 + Math.floor(Math.random() * 2),
    );
    const res = call(
      'POST',
      '/api/reservations/seats',
      { userId: who, concertId, scheduleId, seatIdList },
      { name: 'reserve', expect: [200, 409] },
    );
    if (res.status === 200) {
      const hold = parsed(res);
      const pay = call(
        'POST',
        '/api/reservations/payments',
        { userId: who, reservationId: hold.reservationId, amount: hold.totalPrice },
        { name: 'pay' },
      );
      if (check(pay, { 'paid': (r) => r.status === 200 })) paid.add(1);
      return;
    }
  }
}

function flow(userId) {
  const who = userId % 2 ? String(userId) : userId;
  const t = parsed(call('POST', '/api/token', { userId: who }, { name: 'token' }));
  if (!check(t, { 'token issued': (x) => x !== null && typeof x.token === 'string' })) return;
  if (!check(null, { 'admitted': () => waitActive(userId) })) return;
  const concerts = parsed(call('GET', '/api/concerts', null, { name: 'concerts' }));
  if (!check(concerts, { 'concerts listed': (x) => Array.isArray(x) && x.length > 0 })) return;
  const concertId = oneOf(concerts).concertId;
  const schedules = parsed(call('GET', `/api/concerts/schedules/${concertId}`, null, { name: 'schedules' }));
  if (!check(schedules, { 'schedules listed': (x) => Array.isArray(x) && x.length > 0 })) return;
  reserveAndPay(who, concertId, oneOf(schedules).scheduleId);
}

export default function () {
  flow(__VU);
  sleep(THINK);
}
