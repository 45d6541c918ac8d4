/* http.c -- the payment gateway adapter over HTTP/JSON with libcurl (see
 * gateway.h and docs/gateway.md for the protocol mockpg also speaks).
 *
 *   charge: POST {base}/v1/charges {"idempotencyKey","userId","amount"}
 *           200 + "APPROVED" -> APPROVED, 402 -> DECLINED, anything else UNKNOWN
 *   lookup: GET {base}/v1/charges/{key}
 *           200 + APPROVED/DECLINED, 404 -> NOT_FOUND, anything else UNKNOWN
 *
 * Responsible for the wire format and for turning every failure into
 * GW_UNKNOWN. Not here: retries, the breaker, payments (service/).
 *
 * Design notes
 *
 *   1. One CURL easy handle per calling thread (a pthread key whose
 *      destructor cleans it up when the thread exits), so a request reuses
 *      its thread's connection to the gateway and never takes a lock.
 *   2. CURLOPT_NOSIGNAL: timeouts must not use signals in a threaded server.
 *      CURLOPT_TIMEOUT_MS bounds the whole exchange, connect included.
 *   3. The adapter refuses keys longer than GW_KEY_MAX or with characters
 *      other than [A-Za-z0-9._-], so a key goes into the lookup path and
 *      the JSON body as is, and nothing odd reaches a URL or a log. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "gateway/gateway.h"

#define MOD "gateway"
#define BODY_MAX (64 * 1024)
#define URL_MAX 512

struct http_gateway {
    struct gateway base; /* must be first */
    char *base_url;      /* without a trailing '/' */
    long timeout_ms;
    pthread_key_t key; /* the calling thread's CURL * (design note 1) */
};

struct buf {
    char data[BODY_MAX + 1];
    size_t len;
};

const char *gateway_outcome_name(int outcome) {
    switch (outcome) {
    case GW_APPROVED: return "APPROVED";
    case GW_DECLINED: return "DECLINED";
    case GW_NOT_FOUND: return "NOT_FOUND";
    case GW_UNKNOWN: return "UNKNOWN";
    }
    return "?";
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx) {
    struct buf *b = ctx;
    size_t len = size * n;
    if (b->len + len > BODY_MAX) return 0; /* too big: curl fails the transfer -> UNKNOWN */
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return len;
}

static void drop_handle(void *h) {
    curl_easy_cleanup(h);
}

static CURL *thread_handle(struct http_gateway *g) {
    CURL *h = pthread_getspecific(g->key);
    if (h) {
        curl_easy_reset(h); /* keeps its connection cache */
    } else {
        h = curl_easy_init();
        if (!h) return NULL;
        pthread_setspecific(g->key, h);
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, g->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, g->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    return h;
}

static int key_ok(const char *key) {
    size_t n = strlen(key);
    if (n == 0 || n > GW_KEY_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Reads {"status":..., "chargeId":...} of a 200 answer into out. */
static void read_answer(const struct buf *b, struct gw_result *out) {
    json_t *o = json_loadb(b->data, b->len, 0, NULL);
    const char *status = json_string_value(json_object_get(o, "status"));
    const char *id = json_string_value(json_object_get(o, "chargeId"));
    if (status && strcmp(status, "APPROVED") == 0) {
        out->outcome = GW_APPROVED;
        snprintf(out->charge_id, sizeof(out->charge_id), "%s", id ? id : "");
    } else if (status && strcmp(status, "DECLINED") == 0) {
        out->outcome = GW_DECLINED;
    }
    json_decref(o);
}

/* Performs the prepared request; the answer's status into out (0: none). */
static void perform(CURL *h, const char *op, const char *key, struct buf *b,
                    struct gw_result *out) {
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    out->http_status = (int)status;
    b->data[b->len] = '\0';
    if (rc != CURLE_OK) LOG_WARN(MOD, "op=%s key=%s err=\"%s\"", op, key, curl_easy_strerror(rc));
}

static int http_charge(struct gateway *gw, const char *key, int64_t user_id, int64_t amount,
                       struct gw_result *out) {
    struct http_gateway *g = (struct http_gateway *)gw;
    memset(out, 0, sizeof(*out));
    out->outcome = GW_UNKNOWN;
    if (!key_ok(key) || amount <= 0) return ERR_INVALID;
    CURL *h = thread_handle(g);
    if (!h) return 0;
    char url[URL_MAX], body[256];
    snprintf(url, sizeof(url), "%s/v1/charges", g->base_url);
    snprintf(body, sizeof(body), "{\"idempotencyKey\":\"%s\",\"userId\":%lld,\"amount\":%lld}", key,
             (long long)user_id, (long long)amount);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    struct buf *b = xmalloc(sizeof(*b));
    b->len = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    perform(h, "charge", key, b, out);
    if (out->http_status == 200) read_answer(b, out);
    if (out->http_status == 402) out->outcome = GW_DECLINED;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdr);
    free(b);
    return 0;
}

static int http_lookup(struct gateway *gw, const char *key, struct gw_result *out) {
    struct http_gateway *g = (struct http_gateway *)gw;
    memset(out, 0, sizeof(*out));
    out->outcome = GW_UNKNOWN;
    if (!key_ok(key)) return ERR_INVALID;
    CURL *h = thread_handle(g);
    if (!h) return 0;
    char url[URL_MAX];
    snprintf(url, sizeof(url), "%s/v1/charges/%s", g->base_url, key); /* design note 3 */
    struct buf *b = xmalloc(sizeof(*b));
    b->len = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    perform(h, "lookup", key, b, out);
    if (out->http_status == 200) read_answer(b, out);
    if (out->http_status == 404) out->outcome = GW_NOT_FOUND;
    free(b);
    return 0;
}

static void http_close(struct gateway *gw) {
    struct http_gateway *g = (struct http_gateway *)gw;
    CURL *h = pthread_getspecific(g->key); /* the closing thread's own, if it made calls */
    if (h) curl_easy_cleanup(h);
    pthread_key_delete(g->key);
    free(g->base_url);
    free(g);
    curl_global_cleanup();
}

static const struct gateway_ops http_ops = {
    .charge = http_charge,
    .lookup = http_lookup,
    .close = http_close,
};

int gateway_http_open(const char *base_url, int64_t timeout_ms, struct gateway **out, char *errbuf,
                      size_t errlen) {
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/') n--;
    if ((strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0) || n < 9 ||
        n > URL_MAX - 100) {
        snprintf(errbuf, errlen, "--pg-url %s: want http://HOST:PORT or https://HOST:PORT",
                 base_url);
        return ERR_INVALID;
    }
    if (timeout_ms < 1) {
        snprintf(errbuf, errlen, "--pg-timeout must be at least 1ms");
        return ERR_INVALID;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(errbuf, errlen, "libcurl failed to initialise");
        return ERR_UNAVAILABLE;
    }
    struct http_gateway *g = xcalloc(1, sizeof(*g));
    g->base.ops = &http_ops;
    g->base_url = xmalloc(n + 1);
    memcpy(g->base_url, base_url, n);
    g->base_url[n] = '\0';
    g->timeout_ms = (long)timeout_ms;
    if (pthread_key_create(&g->key, drop_handle) != 0) {
        free(g->base_url);
        free(g);
        curl_global_cleanup();
        snprintf(errbuf, errlen, "cannot create a thread key for the gateway client");
        return ERR_UNAVAILABLE;
    }
    *out = &g->base;
    return 0;
}
