// classic_balance.js -- scenario 4 (the second report, classic API): VUS
// users (100) for DURATION (1m) look a balance up and charge it, again and
// again, as that report's client does: the amount charged is the balance it
// just read + 6000 (so a balance doubles with each charge).
//
//   concertd serve
//   k6 run loadtest/k6/classic_balance.js
//
// Each iteration picks a user among USER_BASE + 1 .. USER_BASE + USERS
// (default 2,000,001..2,100,000: users spring into existence on first use).
// Since balances double, a user charged often enough meets --max-charge
// (10,000,000 by default: after 11 charges) and gets a 400, which this
// client does not expect: keep USERS large against the iterations
// (VUS x DURATION / THINK), or start concertd with a larger --max-charge
// for THINK=0 runs (docs in README.md).
import { check, sleep } from 'k6';

import { THINK, call, num, parsed, str, thresholds } from './lib.js';

const USERS = num('USERS', 100000);
const USER_BASE = num('USER_BASE', 2000000);
const STEP = 6000;

export const options = {
  scenarios: {
    balance: { executor: 'constant-vus', vus: num('VUS', 100), duration: str('DURATION', '1m') },
  },
  thresholds: thresholds(10),
};

function round(userId) {
  const b = parsed(call('GET', `/api/balance/${userId}`, null, { name: 'balance' }));
  if (!check(b, { 'balance read': (x) => x !== null && x.userId === userId && Number.isInteger(x.amount) })) return;
  const amount = b.amount + STEP;
  const c = parsed(call('PUT', '/api/balance/charge', { userId, amount }, { name: 'charge' }));
  // Another VU may charge the same user in between: the new balance is at
  // least what was read plus what was sent.
  check(c, { 'charged': (x) => x !== null && x.userId === userId && x.amount >= b.amount + amount });
}

export default function () {
  round(USER_BASE + 1 + Math.floor(Math.random() * USERS));
  sleep(THINK);
}
