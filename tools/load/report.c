/* report.c -- the end-of-run summary as text (k6's layout and metric
 * names, so users read it without learning anything new) and as JSON
 * (everything measured, for scripts and tests). Not here: the HTML report
 * (html.c). */
#include <stdio.h>
#include <string.h>

#include "load.h"

void report_lat(const struct hist *h, double out[LAT_N]) {
    out[LAT_AVG] = hist_mean(h) / 1000;
    out[LAT_MIN] = h->count ? (double)h->min_us / 1000 : 0;
    out[LAT_MED] = hist_pct(h, 50) / 1000;
    out[LAT_P90] = hist_pct(h, 90) / 1000;
    out[LAT_P95] = hist_pct(h, 95) / 1000;
    out[LAT_P99] = hist_pct(h, 99) / 1000;
    out[LAT_MAX] = (double)h->max_us / 1000;
}

const char *const report_lat_name[LAT_N] = {"avg", "min", "med", "p90", "p95", "p99", "max"};

/* k6's way of writing a duration: 812µs, 1.23ms, 2.5s. */
static const char *dur(double ms, char *buf, size_t cap) {
    if (ms < 1)
        snprintf(buf, cap, "%.0fµs", ms * 1000);
    else if (ms < 1000)
        snprintf(buf, cap, "%.2fms", ms);
    else
        snprintf(buf, cap, "%.2fs", ms / 1000);
    return buf;
}

static void label(FILE *f, int indent, const char *name) {
    int n = fprintf(f, "%*s%s", indent, "", name);
    for (; n < 38; n++) fputc('.', f);
    fputs(": ", f);
}

static void lat_line(FILE *f, int indent, const char *name, const struct hist *h) {
    double v[LAT_N];
    char b[LAT_N][24];
    report_lat(h, v);
    label(f, indent, name);
    fprintf(f, "avg=%-8s min=%-8s med=%-8s max=%-8s p(90)=%-8s p(95)=%-8s p(99)=%s\n",
            dur(v[LAT_AVG], b[0], 24), dur(v[LAT_MIN], b[1], 24), dur(v[LAT_MED], b[2], 24),
            dur(v[LAT_MAX], b[3], 24), dur(v[LAT_P90], b[4], 24), dur(v[LAT_P95], b[5], 24),
            dur(v[LAT_P99], b[6], 24));
}

static double pct_of(uint64_t a, uint64_t total) {
    return total ? 100.0 * (double)a / (double)total : 0;
}

void report_text(FILE *f, const struct opts *o, const struct result *res) {
    const struct tmetrics *m = &res->m;
    char stages[512] = "", name[64];
    if (o->executor == X_RAMPING) load_stages_text(o, stages, sizeof(stages));
    fprintf(f, "\n  scenario: %s, executor: %s", load_scenario_name[o->scenario],
            load_executor_name[o->executor]);
    if (o->test) fprintf(f, " (--test %s)", o->test);
    if (*stages) fprintf(f, " stages %s", stages);
    if (o->executor == X_ARRIVAL) fprintf(f, " at %.6g/s", o->rate);
    if (o->executor == X_ITERATIONS) fprintf(f, " x%ld", o->iterations);
    fprintf(f,
            "\n  target: http://%s:%d, %ld VUs max over %ld connections, %d threads, "
            "ran %.1fs from %s\n\n",
            o->host, o->port, o->vus, o->conns, o->threads, res->secs, res->started);

    uint64_t pass = 0, fail = 0;
    for (int i = 0; i < C_COUNT; i++) {
        uint64_t p = m->check_pass[i], q = m->check_fail[i];
        if (!p && !q) continue;
        pass += p, fail += q;
        fprintf(f, "     %s %s: %.2f%% ✓ %llu ✗ %llu\n", q ? "✗" : "✓", load_check_name[i],
                pct_of(p, p + q), (unsigned long long)p, (unsigned long long)q);
    }
    fputc('\n', f);
    label(f, 5, "checks");
    fprintf(f, "%.2f%% ✓ %llu ✗ %llu\n", pass + fail ? pct_of(pass, pass + fail) : 100.0,
            (unsigned long long)pass, (unsigned long long)fail);
    label(f, 5, "data_received");
    fprintf(f, "%.1f MB %.1f MB/s\n", (double)m->bytes_in / 1e6,
            (double)m->bytes_in / 1e6 / res->secs);
    label(f, 5, "data_sent");
    fprintf(f, "%.1f MB %.1f MB/s\n", (double)m->bytes_out / 1e6,
            (double)m->bytes_out / 1e6 / res->secs);
    lat_line(f, 5, "http_req_duration", &m->all);
    for (int i = 0; i < R_COUNT; i++) {
        if (!m->route_reqs[i]) continue;
        snprintf(name, sizeof(name), "{ route:%s }", load_route_name[i]);
        lat_line(f, 7, name, &m->route[i]);
    }
    label(f, 5, "http_req_failed");
    fprintf(f, "%.2f%% ✓ %llu ✗ %llu\n", pct_of(m->failed, m->reqs), (unsigned long long)m->failed,
            (unsigned long long)(m->reqs - m->failed));
    label(f, 5, "http_reqs");
    fprintf(f, "%llu %.1f/s\n", (unsigned long long)m->reqs, (double)m->reqs / res->secs);
    for (int i = 0; i < R_COUNT; i++) {
        if (!m->route_reqs[i]) continue;
        snprintf(name, sizeof(name), "{ route:%s }", load_route_name[i]);
        label(f, 7, name);
        fprintf(f, "%llu %.1f/s failed=%llu\n", (unsigned long long)m->route_reqs[i],
                (double)m->route_reqs[i] / res->secs, (unsigned long long)m->route_failed[i]);
    }
    label(f, 5, "iterations");
    fprintf(f, "%llu %.1f/s\n", (unsigned long long)m->iters, (double)m->iters / res->secs);
    if (m->interrupted)
        label(f, 5, "iterations_interrupted"),
            fprintf(f, "%llu\n", (unsigned long long)m->interrupted);
    if (o->executor == X_ARRIVAL)
        label(f, 5, "dropped_iterations"), fprintf(f, "%llu\n", (unsigned long long)m->dropped);
    label(f, 5, "vus_max");
    fprintf(f, "%ld\n", res->vus_max);
    label(f, 5, "status");
    fprintf(f, "2xx=%llu 3xx=%llu 4xx=%llu 5xx=%llu none=%llu\n", (unsigned long long)m->status[2],
            (unsigned long long)m->status[3], (unsigned long long)m->status[4],
            (unsigned long long)m->status[5], (unsigned long long)m->status[0]);
    label(f, 5, "connections");
    fprintf(f, "opened=%llu errors=%llu timeouts=%llu\n", (unsigned long long)m->connects,
            (unsigned long long)m->conn_errors, (unsigned long long)m->timeouts);
    if (o->nth) fprintf(f, "\n  thresholds:\n");
    for (int i = 0; i < o->nth; i++)
        fprintf(f, "     %s %s (got %.4g)\n", res->th_ok[i] ? "✓" : "✗", o->th[i].text,
                o->th[i].metric == T_FAILED || o->th[i].metric == T_CHECKS ? res->th_value[i] * 100
                                                                           : res->th_value[i]);
    if (o->test && strcmp(o->test, "breakpoint") == 0) {
        if (res->broke)
            fprintf(f,
                    "\n  breakpoint: broke at %.0fs with %ld VUs running: %s, at %.0f req/s;\n"
                    "  the highest load that passed: %.0f req/s with %ld VUs\n",
                    res->broke_at_s, res->broke_vus, res->broke_why, res->broke_rps, res->best_rps,
                    res->best_vus);
        else
            fprintf(f,
                    "\n  breakpoint: did not break up to %ld VUs (best %.0f req/s with %ld VUs)\n",
                    o->vus, res->best_rps, res->best_vus);
    }
    fputc('\n', f);
}

/* ---- JSON ------------------------------------------------------------------- */

static void json_lat(FILE *f, const struct hist *h) {
    double v[LAT_N];
    report_lat(h, v);
    for (int i = 0; i < LAT_N; i++)
        fprintf(f, "%s\"%s\":%.4f", i ? "," : "", report_lat_name[i], v[i]);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_run(FILE *f, const struct opts *o, const struct result *res) {
    fprintf(f, "\"tool\":\"concert-load\",\"started\":\"%s\",\"target\":\"http://%s:%d\",",
            res->started, o->host, o->port);
    fprintf(f, "\"scenario\":\"%s\",\"executor\":\"%s\",\"test\":", load_scenario_name[o->scenario],
            load_executor_name[o->executor]);
    if (o->test)
        json_str(f, o->test);
    else
        fputs("null", f);
    fprintf(f,
            ",\"vus\":%ld,\"connections\":%ld,\"threads\":%d,\"duration_s\":%.3f,\"rate\":%.6g,"
            "\"iterations_per_vu\":%ld,\"stages\":[",
            o->vus, o->conns, o->threads, res->secs, o->rate, o->iterations);
    for (int i = 0; o->executor == X_RAMPING && i < o->nstages; i++)
        fprintf(f, "%s{\"duration_s\":%.3f,\"target\":%ld}", i ? "," : "",
                (double)o->stages[i].dur_us / 1e6, o->stages[i].target);
    fputs("],", f);
}

static void json_metrics(FILE *f, const struct result *res) {
    const struct tmetrics *m = &res->m;
    uint64_t pass = 0, fail = 0;
    for (int i = 0; i < C_COUNT; i++) pass += m->check_pass[i], fail += m->check_fail[i];
    fprintf(f, "\"metrics\":{\"http_reqs\":{\"count\":%llu,\"rate\":%.3f},\"http_req_duration\":{",
            (unsigned long long)m->reqs, (double)m->reqs / res->secs);
    json_lat(f, &m->all);
    fprintf(f, "},\"http_req_failed\":{\"rate\":%.6f,\"failed\":%llu,\"total\":%llu},",
            m->reqs ? (double)m->failed / (double)m->reqs : 0, (unsigned long long)m->failed,
            (unsigned long long)m->reqs);
    fprintf(f, "\"checks\":{\"rate\":%.6f,\"passes\":%llu,\"fails\":%llu},",
            pass + fail ? (double)pass / (double)(pass + fail) : 1, (unsigned long long)pass,
            (unsigned long long)fail);
    fprintf(f,
            "\"iterations\":{\"count\":%llu,\"rate\":%.3f,\"interrupted\":%llu,\"dropped\":%llu},",
            (unsigned long long)m->iters, (double)m->iters / res->secs,
            (unsigned long long)m->interrupted, (unsigned long long)m->dropped);
    fprintf(f, "\"vus_max\":%ld,\"data_received\":%llu,\"data_sent\":%llu,", res->vus_max,
            (unsigned long long)m->bytes_in, (unsigned long long)m->bytes_out);
    fprintf(f,
            "\"status\":{\"none\":%llu,\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":"
            "%llu},",
            (unsigned long long)m->status[0], (unsigned long long)m->status[1],
            (unsigned long long)m->status[2], (unsigned long long)m->status[3],
            (unsigned long long)m->status[4], (unsigned long long)m->status[5]);
    fprintf(f, "\"connections\":{\"opened\":%llu,\"errors\":%llu,\"timeouts\":%llu}},",
            (unsigned long long)m->connects, (unsigned long long)m->conn_errors,
            (unsigned long long)m->timeouts);
    fputs("\"routes\":{", f);
    int first = 1;
    for (int i = 0; i < R_COUNT; i++) {
        if (!m->route_reqs[i]) continue;
        fprintf(f, "%s\"%s\":{\"count\":%llu,\"failed\":%llu,\"rate\":%.3f,", first ? "" : ",",
                load_route_name[i], (unsigned long long)m->route_reqs[i],
                (unsigned long long)m->route_failed[i], (double)m->route_reqs[i] / res->secs);
        json_lat(f, &m->route[i]);
        fputc('}', f);
        first = 0;
    }
    fputs("},\"checks\":[", f);
    first = 1;
    for (int i = 0; i < C_COUNT; i++) {
        if (!m->check_pass[i] && !m->check_fail[i]) continue;
        fprintf(f, "%s{\"name\":\"%s\",\"passes\":%llu,\"fails\":%llu}", first ? "" : ",",
                load_check_name[i], (unsigned long long)m->check_pass[i],
                (unsigned long long)m->check_fail[i]);
        first = 0;
    }
    fputs("],", f);
}

int report_json(const char *path, const struct opts *o, const struct result *res) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputc('{', f);
    json_run(f, o, res);
    json_metrics(f, res);
    fputs("\"thresholds\":[", f);
    for (int i = 0; i < o->nth; i++) {
        fprintf(f, "%s{\"threshold\":", i ? "," : "");
        json_str(f, o->th[i].text);
        fprintf(f, ",\"ok\":%s,\"value\":%.6g}", res->th_ok[i] ? "true" : "false",
                res->th_value[i]);
    }
    fprintf(f, "],\"thresholds_ok\":%s,\"breakpoint\":", res->thresholds_ok ? "true" : "false");
    if (o->test && strcmp(o->test, "breakpoint") == 0) {
        fprintf(f,
                "{\"broke\":%s,\"at_s\":%.0f,\"vus\":%ld,\"rps\":%.1f,\"best_rps\":%.1f,"
                "\"best_vus\":%ld,\"why\":",
                res->broke ? "true" : "false", res->broke_at_s, res->broke_vus, res->broke_rps,
                res->best_rps, res->best_vus);
        json_str(f, res->broke_why);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fputs(",\"series\":[", f);
    for (size_t s = 0; s < res->nsec; s++) {
        const struct second *x = &res->m.sec[s];
        double v[LAT_N];
        report_lat(&x->h, v);
        fprintf(
            f,
            "%s{\"t\":%zu,\"vus\":%ld,\"target\":%ld,\"reqs\":%llu,\"failed\":%llu,"
            "\"iterations\":%llu,\"p50\":%.4f,\"p90\":%.4f,\"p95\":%.4f,\"p99\":%.4f,\"max\":%.4f}",
            s ? "," : "", s, res->vus_sec[s], res->target_sec[s], (unsigned long long)x->reqs,
            (unsigned long long)x->failed, (unsigned long long)x->iters, v[LAT_MED], v[LAT_P90],
            v[LAT_P95], v[LAT_P99], v[LAT_MAX]);
    }
    fputs("]}\n", f);
    return fclose(f);
}
