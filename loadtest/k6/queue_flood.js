// queue_flood.js -- scenario 1 (the first report, v1 API): USERS people
// (10,000) enter the waiting room at once, then each polls every POLL
// seconds (3) until its token is ACTIVATED.
//
//   concertd serve --queue-max-active 10000 --queue-admit-per-sec 1000
//   k6 run loadtest/k6/queue_flood.js
//
// Every user must be admitted (queue_admitted == USERS), so the line must
// be able to let all of them in: --queue-max-active >= USERS. The time each
// waited is the queue_wait trend. User ids are USER_BASE + 1 .. USER_BASE +
// USERS (default 1,000,001..), clear of the seeded users of the others.
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

import { call, num, parsed, thresholds } from './lib.js';

const USERS = num('USERS', 10000);
const POLL = num('POLL', 3);
const USER_BASE = num('USER_BASE', 1000000);
const TIMEOUT = num('TIMEOUT', 600); // seconds a user waits at most

const admitted = new Counter('queue_admitted');
const waited = new Trend('queue_wait', true);

export const options = {
  scenarios: {
    flood: {
      executor: 'per-vu-iterations',
      vus: USERS,
      iterations: 1,
      maxDuration: `${TIMEOUT + 60}s`,
    },
  },
  thresholds: thresholds(50, {
    'http_req_duration{name:poll}': [`p(95)<${num('P95_MS', 50)}`],
    queue_admitted: [`count==${USERS}`],
  }),
};

export default function () {
  const userId = USER_BASE + __VU;
  const t0 = Date.now();
  let b = parsed(call('POST', '/api/v1/waiting-queues', { userId }, { name: 'enter', expect: [200, 201] }));
  if (!check(b, { 'entered the line': (x) => x !== null && typeof x.token === 'string' })) return;
  const token = b.token;
  const deadline = t0 + TIMEOUT * 1000;
  while (b.status !== 'ACTIVATED' && Date.now() < deadline) {
    sleep(POLL);
    b = parsed(call('GET', '/api/v1/waiting-queues', null, { name: 'poll', headers: { 'QUEUE-TOKEN': token } }));
    if (!check(b, { 'poll answered': (x) => x !== null && typeof x.status === 'string' })) return;
  }
  if (check(b, { 'admitted': (x) => x.status === 'ACTIVATED' })) {
    admitted.add(1);
    waited.add(Date.now() - t0);
  }
}
