// booking_flow.js -- scenario 2 (the first report, v1 API): USERS people
// (300) who are past the waiting room already each book once: the
// sessions of a concert, the available seats of one session at random,
// hold 1-2 of them at random, pay.
//
//   concertd seed --users 300 --balance 100000000 --active-tokens 'queue_token_{n}'
//   concertd serve
//   k6 run loadtest/k6/booking_flow.js
//
// As that report's client does, it reads sessions[].sessionId and
// availableSeats[].seatId, pays with the reservationId of the hold's
// response, and pays even when the hold failed: then there is no
// reservationId to send, and the 400 that answers it is what this client
// expects (so is the 409 of a hold whose seat someone took in the meantime).
// User n sends the token TOKEN_PATTERN with {n} replaced (queue_token_n).
import { check } from 'k6';
import { Counter } from 'k6/metrics';

import { call, num, oneOf, parsed, pick, str, thresholds } from './lib.js';

const USERS = num('USERS', 300);
const CONCERT = num('CONCERT_ID', 1);
const TOKEN_PATTERN = str('TOKEN_PATTERN', 'queue_token_{n}');

const paid = new Counter('bookings_paid');
const refused = new Counter('holds_refused');

export const options = {
  scenarios: {
    booking: { executor: 'per-vu-iterations', vus: USERS, iterations: 1, maxDuration: '5m' },
  },
  thresholds: thresholds(20, { bookings_paid: ['count>0'] }),
};

export default function () {
  const userId = __VU;
  const headers = { 'QUEUE-TOKEN': TOKEN_PATTERN.replace('{n}', String(userId)) };
  const s = parsed(call('GET', `/api/v1/concerts/${CONCERT}/sessions`, null, { name: 'sessions', headers }));
  if (!check(s, { 'sessions listed': (x) => x !== null && x.sessions.length > 0 })) return;
  const sessionId = oneOf(s.sessions.map((x) => x.sessionId));
  const seats = parsed(
    call('GET', `/api/v1/concerts/${CONCERT}/sessions/${sessionId}/seats`, null, { name: 'seats', headers }),
  );
  if (!check(seats, { 'seats listed': (x) => x !== null && Array.isArray(x.availableSeats) })) return;
  if (seats.availableSeats.length === 0) return; // sold out: nothing to book
  const seatIds = pick(
    seats.availableSeats.map((x) => x.seatId),
    1 + Math.floor(Math.random() * 2),
  );
  const holdRes = call(
    'POST',
    `/api/v1/concerts/${CONCERT}/sessions/${sessionId}/reservations`,
    { userId, seatIds },
    { name: 'hold', expect: [201, 409], headers },
  );
  const hold = parsed(holdRes) || {};
  // Pays whatever came back: after a 409 hold.reservationId is undefined,
  // and JSON.stringify leaves it out.
  const payRes = call(
    'POST',
    '/api/v1/payments',
    { userId, reservationId: hold.reservationId },
    { name: 'pay', expect: holdRes.status === 201 ? [201] : [400], headers },
  );
  if (holdRes.status === 201) {
    if (check(payRes, { 'paid': (r) => r.status === 201 })) paid.add(1);
  } else {
    refused.add(1);
    check(payRes, { 'payment without a reservation refused': (r) => r.status === 400 });
  }
}
