// k6shim.mjs -- runs a k6 script of loadtest/k6/ under Node, for the tests
// (k6 itself is not installed here). test_k6_scripts.py rewrites each
// script's `import ... from 'k6...'` lines into bindings to globalThis.__k6,
// which this file fills with a small synchronous stand-in for the parts of
// the k6 API the scripts use: http.request (through curl, one process per
// request, since k6's HTTP calls block), http.expectedStatuses, check,
// sleep, and the custom metrics.
//
//   K6_SCRIPT=/tmp/x/booking_flow.js K6_ENV='{"BASE_URL":"http://..."}' \
//   K6_VUS=3 K6_ITERATIONS=1 K6_RUN=1 node k6shim.mjs
//
// Prints one JSON object: the script's options, and with K6_RUN=1 every
// request (method, path, status, expected or not, the step's name), the
// checks (passes, fails) and the custom metrics' samples. Not a load
// generator: VUs run one after another, each for K6_ITERATIONS iterations.
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

const requests = [];
const checks = {};
const metrics = {};

function expectedStatuses(...specs) {
  return { statuses: specs };
}

function expected(cb, status) {
  const specs = cb ? cb.statuses : [{ min: 200, max: 399 }]; // k6's default
  return specs.some((s) => (typeof s === 'number' ? s === status : status >= s.min && status <= s.max));
}

function request(method, url, body, params) {
  const p = params || {};
  const args = ['-s', '-S', '-X', method, '--max-time', '10', '-w', '\n__STATUS__%{http_code}'];
  for (const [k, v] of Object.entries(p.headers || {})) args.push('-H', `${k}: ${v}`);
  if (body !== null && body !== undefined) args.push('--data-binary', String(body));
  args.push(url);
  const out = execFileSync('curl', args, { encoding: 'utf8' });
  const at = out.lastIndexOf('\n__STATUS__');
  const status = Number(out.slice(at + '\n__STATUS__'.length));
  const text = out.slice(0, at);
  const name = (p.tags && p.tags.name) || url;
  requests.push({ method, path: new URL(url).pathname, status, expected: expected(p.responseCallback, status), name });
  return {
    status,
    body: text,
    json() {
      return JSON.parse(text);
    },
  };
}

function check(val, sets) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    let ok = false;
    try {
      ok = !!fn(val);
    } catch (e) {
      ok = false;
    }
    const c = (checks[name] = checks[name] || [0, 0]);
    c[ok ? 0 : 1]++;
    all = all && ok;
  }
  return all;
}

function sleep(seconds) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

class Metric {
  constructor(name) {
    this.name = name;
    metrics[name] = metrics[name] || [];
  }
  add(value) {
    metrics[this.name].push(Number(value));
  }
}

globalThis.__k6 = {
  k6: { check, sleep, group: (n, fn) => fn() },
  http: { request, expectedStatuses, setResponseCallback() {} },
  metrics: { Counter: Metric, Gauge: Metric, Rate: Metric, Trend: Metric },
};
globalThis.__ENV = JSON.parse(process.env.K6_ENV || '{}');
globalThis.__VU = 0; // k6's init context
globalThis.__ITER = 0;

const mod = await import(pathToFileURL(process.env.K6_SCRIPT).href);
const result = { options: mod.options };
if (process.env.K6_RUN === '1') {
  const vus = Number(process.env.K6_VUS || 1);
  const iterations = Number(process.env.K6_ITERATIONS || 1);
  for (let vu = 1; vu <= vus; vu++) {
    globalThis.__VU = vu;
    for (let it = 0; it < iterations; it++) {
      globalThis.__ITER = it;
      mod.default();
    }
  }
  Object.assign(result, { requests, checks, metrics });
}
process.stdout.write(JSON.stringify(result));
