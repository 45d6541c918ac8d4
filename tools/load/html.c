/* html.c -- the HTML report: one self-contained file (no scripts, fonts or
 * images from elsewhere) with the summary table and four charts drawn as
 * inline SVG: throughput, latency percentiles over time, errors, and VUs.
 * Not here: the numbers themselves (report.c computes the summary). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define W 900
#define H 260
#define ML 64 /* margins */
#define MR 16
#define MT 28
#define MB 36

struct series {
    const char *name, *color;
    const double *v;
};

/* A round number >= x for the top of an axis. */
static double nice_max(double x) {
    if (x <= 0) return 1;
    double p = pow(10, floor(log10(x))), m = x / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static void chart(FILE *f, const char *id, const char *title, const char *unit, size_t n,
                  const struct series *s, int ns) {
    double top = 0;
    for (int k = 0; k < ns; k++)
        for (size_t i = 0; i < n; i++)
            if (s[k].v[i] > top) top = s[k].v[i];
    top = nice_max(top);
    double pw = W - ML - MR, ph = H - MT - MB;
    double dx = n > 1 ? pw / (double)(n - 1) : pw;
    fprintf(f,
            "<svg id=\"%s\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
            "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">\n<title>%s</title>\n"
            "<style>text{font-family:sans-serif}.g{stroke:#ddd}.frame{fill:none;stroke:#888}"
            ".t{font-weight:bold;font-size:14px}.y{text-anchor:end;font-size:11px;fill:#555}"
            ".x{text-anchor:middle;font-size:11px;fill:#555}.k{font-size:12px}</style>\n"
            "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n",
            id, W, H, W, H, title, W, H);
    fprintf(f, "<text x=\"%d\" y=\"18\" class=\"t\">%s (%s)</text>\n", ML, title, unit);
    for (int g = 0; g <= 4; g++) { /* horizontal grid and y labels */
        double y = MT + ph - ph * g / 4.0;
        fprintf(f,
                "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"g\"/>"
                "<text x=\"%d\" y=\"%.1f\" class=\"y\">%.6g</text>\n",
                ML, W - MR, y, y, ML - 6, y + 4, top * g / 4.0);
    }
    size_t step = n > 10 ? (n + 9) / 10 : 1;
    for (size_t i = 0; i < n; i += step) /* x labels: seconds */
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"x\">%zus</text>\n", ML + dx * (double)i,
                H - MB + 16, i);
    for (int k = 0; k < ns; k++) {
        fprintf(f,
                "<polyline class=\"line\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                s[k].color);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "%.1f,%.1f ", ML + dx * (double)i, MT + ph - ph * (s[k].v[i] / top));
        fputs("\"/>\n", f);
        fprintf(f,
                "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                "<text x=\"%d\" y=\"%d\" class=\"k\">%s</text>\n",
                W - MR - 150, MT + 4 + 18 * k, s[k].color, W - MR - 132, MT + 15 + 18 * k,
                s[k].name);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" class=\"frame\"/>\n</svg>\n",
            ML, MT, pw, ph);
}

static void lat_cells(FILE *f, const struct hist *h) {
    double v[LAT_N];
    report_lat(h, v);
    for (int i = 0; i < LAT_N; i++) fprintf(f, "<td>%.3f</td>", v[i]);
}

static void summary(FILE *f, const struct opts *o, const struct result *res) {
    const struct tmetrics *m = &res->m;
    fputs(
        "<h2>Summary</h2>\n<table id=\"summary\"><tr><th>route</th><th>requests</th><th>req/s</th>"
        "<th>failed</th>",
        f);
    for (int i = 0; i < LAT_N; i++) fprintf(f, "<th>%s ms</th>", report_lat_name[i]);
    fputs("</tr>\n", f);
    fprintf(f, "<tr class=\"all\"><td>all</td><td>%llu</td><td>%.1f</td><td>%llu (%.2f%%)</td>",
            (unsigned long long)m->reqs, (double)m->reqs / res->secs, (unsigned long long)m->failed,
            m->reqs ? 100.0 * (double)m->failed / (double)m->reqs : 0);
    lat_cells(f, &m->all);
    fputs("</tr>\n", f);
    for (int r = 0; r < R_COUNT; r++) {
        if (!m->route_reqs[r]) continue;
        fprintf(f, "<tr><td>%s</td><td>%llu</td><td>%.1f</td><td>%llu</td>", load_route_name[r],
                (unsigned long long)m->route_reqs[r], (double)m->route_reqs[r] / res->secs,
                (unsigned long long)m->route_failed[r]);
        lat_cells(f, &m->route[r]);
        fputs("</tr>\n", f);
    }
    fputs(
        "</table>\n<h2>Checks</h2>\n<table><tr><th>check</th><th>passed</th><th>failed</th></tr>\n",
        f);
    for (int i = 0; i < C_COUNT; i++)
        if (m->check_pass[i] || m->check_fail[i])
            fprintf(f, "<tr class=\"%s\"><td>%s</td><td>%llu</td><td>%llu</td></tr>\n",
                    m->check_fail[i] ? "bad" : "ok", load_check_name[i],
                    (unsigned long long)m->check_pass[i], (unsigned long long)m->check_fail[i]);
    fprintf(f,
            "</table>\n<p>iterations %llu (%.1f/s), interrupted %llu, dropped %llu; VUs max %ld; "
            "status 2xx %llu, 4xx %llu, 5xx %llu, no answer %llu</p>\n",
            (unsigned long long)m->iters, (double)m->iters / res->secs,
            (unsigned long long)m->interrupted, (unsigned long long)m->dropped, res->vus_max,
            (unsigned long long)m->status[2], (unsigned long long)m->status[4],
            (unsigned long long)m->status[5], (unsigned long long)m->status[0]);
    if (o->nth)
        fputs("<h2>Thresholds</h2>\n<table><tr><th>threshold</th><th>value</th><th></th></tr>\n",
              f);
    for (int i = 0; i < o->nth; i++)
        fprintf(f, "<tr class=\"%s\"><td>%s</td><td>%.4g</td><td>%s</td></tr>\n",
                res->th_ok[i] ? "ok" : "bad", o->th[i].text, res->th_value[i],
                res->th_ok[i] ? "passed" : "FAILED");
    if (o->nth) fputs("</table>\n", f);
    if (o->test && strcmp(o->test, "breakpoint") == 0)
        fprintf(f,
                "<p class=\"%s\">breakpoint: %s at %.0f s with %ld VUs (%s); highest passing load "
                "%.0f req/s with %ld VUs</p>\n",
                res->broke ? "bad" : "ok", res->broke ? "broke" : "did not break", res->broke_at_s,
                res->broke_vus, res->broke ? res->broke_why : "-", res->best_rps, res->best_vus);
}

/* The per-second values the charts draw: 9 series of res->nsec each. */
enum { V_RPS, V_FAIL, V_P50, V_P90, V_P95, V_P99, V_VUS, V_TGT, V_ITR, V_N };

static double *series_values(const struct result *res) {
    size_t n = res->nsec;
    double *v = calloc(n * V_N, sizeof(double));
    if (!v) abort();
    for (size_t s = 0; s < n; s++) {
        const struct second *x = &res->m.sec[s];
        v[V_RPS * n + s] = (double)x->reqs, v[V_FAIL * n + s] = (double)x->failed;
        v[V_ITR * n + s] = (double)x->iters;
        v[V_P50 * n + s] = hist_pct(&x->h, 50) / 1000,
                      v[V_P90 * n + s] = hist_pct(&x->h, 90) / 1000;
        v[V_P95 * n + s] = hist_pct(&x->h, 95) / 1000,
                      v[V_P99 * n + s] = hist_pct(&x->h, 99) / 1000;
        v[V_VUS * n + s] = (double)res->vus_sec[s], v[V_TGT * n + s] = (double)res->target_sec[s];
    }
    return v;
}

static const char *const chart_id[4] = {"throughput", "latency", "errors", "vus"};

/* Chart k (0..3) into f. */
static void chart_k(FILE *f, int k, const struct opts *o, const struct result *res,
                    const double *v) {
    size_t n = res->nsec;
    int ramp = o->executor == X_CONSTANT || o->executor == X_RAMPING;
    struct series s1[] = {{"requests/s", "#1565c0", v + V_RPS * n},
                          {"iterations/s", "#6a1b9a", v + V_ITR * n}};
    struct series s2[] = {{"p50", "#2e7d32", v + V_P50 * n},
                          {"p90", "#f9a825", v + V_P90 * n},
                          {"p95", "#ef6c00", v + V_P95 * n},
                          {"p99", "#c62828", v + V_P99 * n}};
    struct series s3[] = {{"failed/s", "#c62828", v + V_FAIL * n}};
    struct series s4[] = {{"VUs running", "#00838f", v + V_VUS * n},
                          {ramp ? "VUs target" : "VUs allotted", "#9e9e9e", v + V_TGT * n}};
    switch (k) {
    case 0: chart(f, chart_id[k], "Throughput", "per second", n, s1, 2); break;
    case 1: chart(f, chart_id[k], "Latency percentiles", "ms", n, s2, 4); break;
    case 2: chart(f, chart_id[k], "Failed requests", "per second", n, s3, 1); break;
    default: chart(f, chart_id[k], "Virtual users", "count", n, s4, 2); break;
    }
}

int report_svg(const char *dir, const struct opts *o, const struct result *res) {
    double *v = series_values(res);
    int rc = 0;
    for (int k = 0; k < 4 && rc == 0; k++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.svg", dir, chart_id[k]);
        FILE *f = fopen(path, "w");
        if (!f) {
            rc = -1;
            break;
        }
        fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n", f);
        chart_k(f, k, o, res, v);
        rc = fclose(f);
    }
    free(v);
    return rc;
}

int report_html(const char *path, const struct opts *o, const struct result *res) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    double *v = series_values(res);
    fprintf(
        f,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>concert-load: %s</title>\n<style>\n"
        "body{font:14px/1.4 sans-serif;margin:24px;color:#222;background:#fff}\n"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#eef}\n"
        "tr.all{font-weight:bold}.bad{color:#b00020}.ok{color:#1b5e20}figure{margin:12px 0}\n"
        "</style></head><body>\n",
        load_scenario_name[o->scenario]);
    fprintf(f,
            "<h1>concert-load: %s</h1>\n<p>target http://%s:%d &middot; executor %s%s%s &middot; "
            "%ld VUs max over %ld connections, %d threads &middot; %.1f s from %s &middot; "
            "thresholds <b class=\"%s\">%s</b></p>\n",
            load_scenario_name[o->scenario], o->host, o->port, load_executor_name[o->executor],
            o->test ? " --test " : "", o->test ? o->test : "", o->vus, o->conns, o->threads,
            res->secs, res->started, res->thresholds_ok ? "ok" : "bad",
            res->thresholds_ok ? "passed" : "FAILED");
    summary(f, o, res);
    fputs("<h2>Over time</h2>\n", f);
    for (int k = 0; k < 4; k++) {
        fputs("<figure>", f);
        chart_k(f, k, o, res, v);
        fputs("</figure>\n", f);
    }
    fputs("</body></html>\n", f);
    free(v);
    return fclose(f);
}
