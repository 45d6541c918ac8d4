// lib.js -- what the four k6 scenarios share: where concertd is, settings
// from the environment, JSON requests that know which statuses they expect,
// and the thresholds every scenario applies.
//
// Every request declares the statuses its client expects (a hold may meet a
// seat taken in the meantime: 409). Those count as successes for
// http_req_failed; anything else counts as a failure and in
// unexpected_status, tagged with the step's name. Not here: the scenarios'
// steps (one file each).
import http from 'k6/http';
import { Rate } from 'k6/metrics';

// A number from the environment (k6 run -e NAME=value), or def.
export function num(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got "${v}"`);
  return n;
}

export function str(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

export const BASE = str('BASE_URL', 'http://127.0.0.1:8080');
export const THINK = num('THINK', 1); // seconds a user pauses between iterations

export const unexpected = new Rate('unexpected_status');

// One request with a JSON body (or none). opts: name (the step, a metric
// tag), expect (statuses this client expects; default [200]), headers.
export function call(method, path, body, opts) {
  const o = opts || {};
  const expect = o.expect || [200];
  const headers = Object.assign({}, o.headers || {});
  let payload = null;
  if (body !== undefined && body !== null) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const res = http.request(method, BASE + path, payload, {
    headers,
    tags: { name: o.name || path },
    responseCallback: http.expectedStatuses(...expect),
  });
  unexpected.add(expect.indexOf(res.status) < 0, { name: o.name || path });
  return res;
}

// The parsed JSON body, or null when there is none.
export function parsed(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

// n distinct elements of arr, at random.
export function pick(arr, n) {
  const a = arr.slice();
  const out = [];
  while (out.length < n && a.length) out.push(a.splice(Math.floor(Math.random() * a.length), 1)[0]);
  return out;
}

export function oneOf(arr) {
  return arr[Math.floor(Math.random() * arr.length)];
}

// The thresholds of every scenario: p95 of its requests under p95ms (the
// P95_MS environment variable overrides it), no request answered with a
// status its client did not expect (MAX_ERROR_RATE overrides the 0), and
// every check passed. extra: the scenario's own.
export function thresholds(p95ms, extra) {
  const maxErr = num('MAX_ERROR_RATE', 0);
  return Object.assign(
    {
      http_req_duration: [`p(95)<${num('P95_MS', p95ms)}`],
      http_req_failed: [`rate<=${maxErr}`],
      unexpected_status: [`rate<=${maxErr}`],
      checks: ['rate==1'],
    },
    extra || {},
  );
}
