/* status.c -- the names the store adapters write for the states of store.h
 * (reservations.status, payments.status, waiting_tokens.status: the same
 * text in every schema), and back. Not here: what the states mean
 * (store.h, service/). */
#include <string.h>

#include "store/store.h"

static const char *const RES_STATUS[] = {
    [STORE_RES_HELD] = "HELD",           [STORE_RES_PAYMENT_PENDING] = "PAYMENT_PENDING",
    [STORE_RES_CONFIRMED] = "CONFIRMED", [STORE_RES_CANCELLED] = "CANCELLED",
    [STORE_RES_EXPIRED] = "EXPIRED",
};
static const char *const PAY_STATUS[] = {
    [STORE_PAY_PENDING] = "PENDING",
    [STORE_PAY_COMPLETED] = "COMPLETED",
    [STORE_PAY_FAILED] = "FAILED",
};
static const char *const TOKEN_STATE[] = {
    [STORE_TOKEN_WAITING] = "WAITING",
    [STORE_TOKEN_ACTIVATED] = "ACTIVATED",
    [STORE_TOKEN_EXPIRED] = "EXPIRED",
};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *name_of(const char *const *names, int n, int v) {
    return v >= 0 && v < n && names[v] ? names[v] : "";
}

static int value_of(const char *const *names, int n, const char *text) {
    for (int i = 0; text && i < n; i++)
        if (names[i] && strcmp(text, names[i]) == 0) return i;
    return -1;
}

const char *store_res_status_name(int status) {
    return name_of(RES_STATUS, COUNT(RES_STATUS), status);
}

int store_res_status_of(const char *text) {
    return value_of(RES_STATUS, COUNT(RES_STATUS), text);
}

const char *store_pay_status_name(int status) {
    return name_of(PAY_STATUS, COUNT(PAY_STATUS), status);
}

int store_pay_status_of(const char *text) {
    return value_of(PAY_STATUS, COUNT(PAY_STATUS), text);
}

const char *store_token_state_name(int state) {
    return name_of(TOKEN_STATE, COUNT(TOKEN_STATE), state);
}

int store_token_state_of(const char *text) {
    int v = value_of(TOKEN_STATE, COUNT(TOKEN_STATE), text);
    return v < 0 ? 0 : v;
}
