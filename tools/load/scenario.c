/* scenario.c -- the users' flows, as state machines: what a user sends
 * next, given the answer to what it sent last.
 *
 * Responsible for: the steps of each scenario, the requests they send,
 * which statuses each step expects, the choices a user makes (a session,
 * seats, a user id) and the checks. Not here: connections, timing, sleeping
 * (engine.c), metrics of requests (engine.c records every request).
 *
 * Design notes:
 *  1. A step never blocks: it returns A_SEND (the engine asks scn_request()
 *     for the bytes once a connection is free), A_SLEEP (think time, the
 *     poll interval) or A_DONE (the iteration is over).
 *  2. Choices are made in scn_step() and kept in the vu, so scn_request()
 *     can build the same request whenever a connection frees up.
 *  3. A status the client does not expect ends the iteration after a failed
 *     check: a user who meets an error does not go on as if nothing happened.
 *  4. Paying expires the user's waiting-room token (DESIGN.md 3): booking
 *     users enter the line again before their next booking. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "jscan.h"
#include "load.h"

enum step {
    ST_ENTER = 1,
    ST_POLL,
    ST_LEAVE,
    ST_CONCERTS,
    ST_SESSIONS,
    ST_SEATS,
    ST_HOLD,
    ST_PAY,
    ST_BALANCE,
    ST_CHARGE,
    ST_TOKEN,
    ST_STATUS,
    ST_SCHEDULES,
    ST_GET
};

#define HOLD_ATTEMPTS 3
#define V1_CHARGE 1000
#define CLASSIC_STEP 6000 /* the classic client charges what it read + 6000 */

static int64_t rand_below(struct sctx *c, int64_t n) {
    return n > 0 ? (int64_t)(load_rand(c) % (uint64_t)n) : 0;
}

static int is_2xx(const struct resp *r) {
    return r->status >= 200 && r->status < 300;
}

void scn_init_vu(struct vu *v, const struct opts *o) {
    if (o->ntokens) { /* --tokens: the n-th user's line */
        size_t i = (size_t)(v->user - o->user_base - 1) % o->ntokens;
        snprintf(v->token, sizeof(v->token), "%s", o->tokens[i]);
        v->has_token = 1;
        return;
    }
    if (o->scenario != S_BOOKING) return;
    /* queue_token_{n}: {n} is the user id */
    const char *p = strstr(o->token_pattern, "{n}");
    if (p)
        snprintf(v->token, sizeof(v->token), "%.*s%ld%s", (int)(p - o->token_pattern),
                 o->token_pattern, v->user, p + 3);
    else
        snprintf(v->token, sizeof(v->token), "%s", o->token_pattern);
    v->has_token = 1;
}

/* The first step of an iteration. */
static enum act first_step(struct vu *v, struct sctx *c) {
    v->attempts = 0;
    v->deadline = c->now + c->o->wait_us;
    switch (c->o->scenario) {
    case S_QUEUE_FLOOD:
    case S_FULL_FLOW: v->step = ST_ENTER; break;
    case S_BOOKING:
        v->concert = c->o->concert;
        v->step = v->has_token ? ST_SESSIONS : ST_ENTER;
        break;
    case S_BALANCE:
    case S_CLASSIC_BALANCE:
        v->balance = c->o->user_base + 1 + rand_below(c, c->o->users); /* the user read */
        v->step = ST_BALANCE;
        break;
    case S_CLASSIC_FLOW: v->step = ST_TOKEN; break;
    case S_GET: v->step = ST_GET; break;
    default: return A_DONE;
    }
    return A_SEND;
}

/* After ACTIVATED: what the scenario does inside. */
static enum act admitted(struct vu *v, struct sctx *c) {
    load_check(c, C_ADMITTED, 1);
    v->has_token = 1;
    switch (c->o->scenario) {
    case S_QUEUE_FLOOD: v->step = ST_LEAVE; break;
    case S_FULL_FLOW: v->step = ST_CONCERTS; break;
    case S_BOOKING: v->step = ST_SESSIONS; break;
    default: v->step = ST_CONCERTS; break; /* classic */
    }
    return A_SEND;
}

/* Still waiting: poll again after the poll interval, unless the wait is over. */
static enum act wait_more(struct vu *v, struct sctx *c, int64_t *sleep_us) {
    if (c->now >= v->deadline) {
        load_check(c, C_ADMITTED, 0);
        return A_DONE;
    }
    v->step = c->o->scenario == S_CLASSIC_FLOW ? ST_STATUS : ST_POLL;
    *sleep_us = c->o->poll_us;
    return A_SLEEP;
}

static enum act on_queue(struct vu *v, struct sctx *c, const struct resp *r, int64_t *sleep_us) {
    char status[16] = "";
    int ok = is_2xx(r) && js_str(r->body, "status", status, sizeof(status));
    if (v->step == ST_ENTER) {
        ok = ok && js_str(r->body, "token", v->token, sizeof(v->token));
        load_check(c, C_ENTERED, ok);
    } else {
        load_check(c, C_POLLED, ok);
    }
    if (!ok) return A_DONE;
    if (strcmp(status, "ACTIVATED") == 0) return admitted(v, c);
    if (strcmp(status, "WAITING") != 0) { /* EXPIRED: dropped from the line */
        load_check(c, C_ADMITTED, 0);
        return A_DONE;
    }
    return wait_more(v, c, sleep_us);
}

/* The sessions (v1) or schedules (classic) list: picks one with seats left
 * at random. Returns 0 when every one is sold out. */
static int pick_session(struct vu *v, struct sctx *c, const char *body, const char *idkey) {
    size_t n = js_count(body, idkey), open = 0;
    int64_t id, avail, total, pick_id = 0, pick_total = 0, pick_avail = 0;
    for (size_t i = 0; i < n; i++) {
        if (!js_nth_int(body, idkey, i, &id) || !js_nth_int(body, "availableSeats", i, &avail))
            continue;
        if (!js_nth_int(body, "totalSeats", i, &total)) total = avail;
        if (avail <= 0) continue;
        if (rand_below(c, (int64_t)++open) == 0) { /* reservoir sampling */
            pick_id = id;
            pick_total = total;
            pick_avail = avail;
        }
    }
    v->session = pick_id;
    v->total = c->o->scenario == S_CLASSIC_FLOW ? pick_avail : pick_total;
    return open > 0;
}

/* 1 or 2 distinct seats at random from the page under key. 0: the page is empty. */
static int pick_seats(struct vu *v, struct sctx *c, const char *body, const char *key) {
    int64_t n = (int64_t)js_count(body, key);
    if (n == 0) return 0;
    int want = 1 + (int)rand_below(c, 2);
    if (want > n) want = (int)n;
    int64_t a = rand_below(c, n), b = rand_below(c, n - 1);
    if (b >= a) b++;
    js_nth_int(body, key, (size_t)a, &v->seats[0]);
    if (want == 2) js_nth_int(body, key, (size_t)b, &v->seats[1]);
    v->nseats = (uint8_t)want;
    return 1;
}

/* A random starting point for the seat page: many users, many pages. */
static void choose_page(struct vu *v, struct sctx *c) {
    if (c->o->scenario == S_CLASSIC_FLOW)
        v->after = rand_below(c, (v->total + c->o->limit - 1) / c->o->limit); /* page index */
    else
        v->after = rand_below(c, v->total); /* seat-number cursor */
}

static enum act on_booking(struct vu *v, struct sctx *c, const struct resp *r) {
    int classic = c->o->scenario == S_CLASSIC_FLOW;
    int64_t n;
    if (r->status == 401 || r->status == 403) v->has_token = 0; /* enter again next time */
    switch (v->step) {
    case ST_CONCERTS:
        n = (int64_t)js_count(r->body, "concertId");
        load_check(c, C_CONCERTS, r->status == 200 && n > 0);
        if (r->status != 200 || n == 0) return A_DONE;
        js_nth_int(r->body, "concertId", (size_t)rand_below(c, n), &v->concert);
        v->step = classic ? ST_SCHEDULES : ST_SESSIONS;
        return A_SEND;
    case ST_SESSIONS:
    case ST_SCHEDULES:
        load_check(c, classic ? C_SCHEDULES : C_SESSIONS, r->status == 200);
        if (r->status != 200 || !pick_session(v, c, r->body, classic ? "scheduleId" : "sessionId"))
            return A_DONE; /* failed, or sold out */
        choose_page(v, c);
        v->step = ST_SEATS;
        return A_SEND;
    case ST_SEATS:
        load_check(c, C_SEATS, r->status == 200);
        if (r->status != 200) return A_DONE;
        if (!pick_seats(v, c, r->body, classic ? "seatNumber" : "seatId")) {
            if (v->after == 0) return A_DONE; /* sold out */
            v->after = 0;                     /* nothing past the cursor: from the start */
            return A_SEND;
        }
        v->step = ST_HOLD;
        return A_SEND;
    case ST_HOLD:
        if (r->status == 409 && ++v->attempts < HOLD_ATTEMPTS) { /* taken meanwhile */
            choose_page(v, c);
            v->step = ST_SEATS;
            return A_SEND;
        }
        load_check(c, C_HELD, is_2xx(r) && js_int(r->body, "reservationId", &v->rid, NULL));
        if (!is_2xx(r)) return A_DONE;
        if (!js_int(r->body, "totalPrice", &v->price, NULL)) v->price = 0;
        v->step = ST_PAY;
        return A_SEND;
    case ST_PAY:
        load_check(c, C_PAID, is_2xx(r));
        v->has_token = 0; /* paying expires the token */
        return A_DONE;
    default: return A_DONE;
    }
}

static enum act on_balance(struct vu *v, struct sctx *c, const struct resp *r) {
    int64_t amount;
    const char *key = c->o->scenario == S_CLASSIC_BALANCE ? "amount" : "balance";
    if (v->step == ST_BALANCE) {
        int ok = r->status == 200 && js_int(r->body, key, &amount, NULL);
        load_check(c, C_BALANCE, ok);
        if (!ok) return A_DONE;
        v->price = amount; /* what was read */
        v->rid = c->o->scenario == S_CLASSIC_BALANCE ? amount + CLASSIC_STEP : V1_CHARGE;
        v->step = ST_CHARGE;
        return A_SEND;
    }
    /* Another user may charge the same account in between: at least. */
    int ok = r->status == 200 && js_int(r->body, key, &amount, NULL) && amount >= v->price + v->rid;
    load_check(c, C_CHARGED, ok);
    return A_DONE;
}

enum act scn_step(struct vu *v, struct sctx *c, const struct resp *r, int64_t *sleep_us) {
    if (!r) {
        if (v->step == 0) return first_step(v, c);
        return A_SEND; /* a sleep ended: send what the step says */
    }
    switch (v->step) {
    case ST_ENTER:
    case ST_POLL: return on_queue(v, c, r, sleep_us);
    case ST_LEAVE: return A_DONE;
    case ST_TOKEN:
        load_check(c, C_TOKEN, r->status == 200 && js_count(r->body, "token") == 1);
        if (r->status != 200) return A_DONE;
        v->step = ST_STATUS;
        return A_SEND;
    case ST_STATUS: {
        int t = r->status == 200 && r->len == 4 && memcmp(r->body, "true", 4) == 0;
        int f = r->status == 200 && r->len == 5 && memcmp(r->body, "false", 5) == 0;
        load_check(c, C_STATUS, t || f);
        if (t) return admitted(v, c);
        if (!f) return A_DONE;
        return wait_more(v, c, sleep_us);
    }
    case ST_BALANCE:
    case ST_CHARGE: return on_balance(v, c, r);
    case ST_GET: load_check(c, C_GOT, is_2xx(r)); return A_DONE;
    default: return on_booking(v, c, r);
    }
}

static void expect(struct req *q, int a, int b) {
    q->expect[0] = a;
    q->expect[1] = b;
    q->expect[2] = 0;
}

/* "userId":42, or "userId":"42" for odd users of the classic flow (that
 * client sends both). */
static const char *user_json(const struct vu *v, const struct opts *o, char *buf, size_t cap) {
    if (o->scenario == S_CLASSIC_FLOW && (v->user & 1))
        snprintf(buf, cap, "\"userId\":\"%ld\"", v->user);
    else
        snprintf(buf, cap, "\"userId\":%ld", v->user);
    return buf;
}

static void seat_list(const struct vu *v, char *buf, size_t cap) {
    if (v->nseats == 2)
        snprintf(buf, cap, "[%" PRId64 ",%" PRId64 "]", v->seats[0], v->seats[1]);
    else
        snprintf(buf, cap, "[%" PRId64 "]", v->seats[0]);
}

static void classic_request(const struct vu *v, const struct opts *o, struct req *q) {
    char u[48], seats[48];
    switch (v->step) {
    case ST_TOKEN:
        q->route = R_TOKEN, q->method = "POST";
        snprintf(q->path, sizeof(q->path), "/api/token");
        snprintf(q->body, sizeof(q->body), "{%s}", user_json(v, o, u, sizeof(u)));
        break;
    case ST_STATUS:
        q->route = R_STATUS;
        snprintf(q->path, sizeof(q->path), "/api/token/status/%ld", v->user);
        break;
    case ST_CONCERTS:
        q->route = R_CONCERTS;
        snprintf(q->path, sizeof(q->path), "/api/concerts");
        break;
    case ST_SCHEDULES:
        q->route = R_SCHEDULES;
        snprintf(q->path, sizeof(q->path), "/api/concerts/schedules/%" PRId64, v->concert);
        break;
    case ST_SEATS:
        q->route = R_SEATS;
        snprintf(q->path, sizeof(q->path),
                 "/api/concerts/seats/%" PRId64 "?page=%" PRId64 "&size=%ld", v->session, v->after,
                 o->limit);
        break;
    case ST_HOLD:
        q->route = R_RESERVE, q->method = "POST";
        expect(q, 200, 409);
        seat_list(v, seats, sizeof(seats));
        snprintf(q->path, sizeof(q->path), "/api/reservations/seats");
        snprintf(q->body, sizeof(q->body),
                 "{%s,\"concertId\":%" PRId64 ",\"scheduleId\":%" PRId64 ",\"seatIdList\":%s}",
                 user_json(v, o, u, sizeof(u)), v->concert, v->session, seats);
        break;
    case ST_PAY:
        q->route = R_PAY, q->method = "POST";
        snprintf(q->path, sizeof(q->path), "/api/reservations/payments");
        snprintf(q->body, sizeof(q->body),
                 "{%s,\"reservationId\":%" PRId64 ",\"amount\":%" PRId64 "}",
                 user_json(v, o, u, sizeof(u)), v->rid, v->price);
        break;
    case ST_BALANCE:
        q->route = R_BALANCE;
        snprintf(q->path, sizeof(q->path), "/api/balance/%" PRId64, v->balance);
        break;
    case ST_CHARGE:
        q->route = R_CHARGE, q->method = "PUT";
        snprintf(q->path, sizeof(q->path), "/api/balance/charge");
        snprintf(q->body, sizeof(q->body), "{\"userId\":%" PRId64 ",\"amount\":%" PRId64 "}",
                 v->balance, v->rid);
        break;
    default: break;
    }
}

static void v1_request(const struct vu *v, const struct opts *o, struct req *q) {
    char seats[48];
    switch (v->step) {
    case ST_ENTER:
        q->route = R_ENTER, q->method = "POST", q->token = NULL;
        expect(q, 200, 201);
        snprintf(q->path, sizeof(q->path), "/api/v1/waiting-queues");
        snprintf(q->body, sizeof(q->body), "{\"userId\":%ld}", v->user);
        break;
    case ST_POLL:
        q->route = R_POLL;
        snprintf(q->path, sizeof(q->path), "/api/v1/waiting-queues");
        break;
    case ST_LEAVE:
        q->route = R_LEAVE, q->method = "DELETE";
        expect(q, 204, 0);
        snprintf(q->path, sizeof(q->path), "/api/v1/waiting-queues");
        break;
    case ST_CONCERTS:
        q->route = R_CONCERTS;
        snprintf(q->path, sizeof(q->path), "/api/v1/concerts");
        break;
    case ST_SESSIONS:
        q->route = R_SESSIONS;
        snprintf(q->path, sizeof(q->path), "/api/v1/concerts/%" PRId64 "/sessions", v->concert);
        break;
    case ST_SEATS:
        q->route = R_SEATS;
        snprintf(q->path, sizeof(q->path),
                 "/api/v1/concerts/%" PRId64 "/sessions/%" PRId64 "/seats?limit=%ld&after=%" PRId64,
                 v->concert, v->session, o->limit, v->after);
        break;
    case ST_HOLD:
        q->route = R_HOLD, q->method = "POST";
        expect(q, 201, 409);
        seat_list(v, seats, sizeof(seats));
        snprintf(q->path, sizeof(q->path),
                 "/api/v1/concerts/%" PRId64 "/sessions/%" PRId64 "/reservations", v->concert,
                 v->session);
        snprintf(q->body, sizeof(q->body), "{\"userId\":%ld,\"seatIds\":%s}", v->user, seats);
        break;
    case ST_PAY:
        q->route = R_PAY, q->method = "POST";
        expect(q, 201, 0);
        snprintf(q->path, sizeof(q->path), "/api/v1/payments");
        snprintf(q->body, sizeof(q->body), "{\"userId\":%ld,\"reservationId\":%" PRId64 "}",
                 v->user, v->rid);
        break;
    case ST_BALANCE:
        q->route = R_BALANCE, q->token = NULL;
        snprintf(q->path, sizeof(q->path), "/api/v1/users/%" PRId64 "/balance", v->balance);
        break;
    case ST_CHARGE:
        q->route = R_CHARGE, q->method = "POST", q->token = NULL;
        snprintf(q->path, sizeof(q->path), "/api/v1/users/%" PRId64 "/balance/charge", v->balance);
        snprintf(q->body, sizeof(q->body), "{\"amount\":%" PRId64 "}", v->rid);
        break;
    default: break;
    }
}

/* src with every {n} replaced by the user id, and every {i} by a number
 * unique to this iteration of this user among all users' iterations
 * (user-base + 1 + user index + iteration x VUs). */
static void subst(char *dst, size_t cap, const char *src, const struct vu *v,
                  const struct opts *o) {
    size_t off = 0;
    while (*src && off + 1 < cap) {
        if (src[0] == '{' && (src[1] == 'n' || src[1] == 'i') && src[2] == '}') {
            long id = src[1] == 'n' ? v->user : v->user + v->iters * o->vus;
            int n = snprintf(dst + off, cap - off, "%ld", id);
            off = n > 0 && (size_t)n < cap - off ? off + (size_t)n : cap - 1;
            src += 3;
        } else {
            dst[off++] = *src++;
        }
    }
    dst[off] = '\0';
}

void scn_request(const struct vu *v, struct sctx *c, struct req *q) {
    const struct opts *o = c->o;
    q->method = "GET";
    q->body[0] = '\0';
    q->token = v->token[0] ? v->token : NULL;
    expect(q, 200, 0);
    if (v->step == ST_GET) {
        q->route = R_GET;
        q->method = o->method;
        q->expect[0] = 0; /* any 2xx */
        size_t i = o->npaths > 1 ? (size_t)(load_rand(c) % o->npaths) : 0;
        subst(q->path, sizeof(q->path), o->paths[i], v, o);
        if (o->body) subst(q->body, sizeof(q->body), o->body, v, o);
        return;
    }
    if (o->scenario == S_CLASSIC_FLOW || o->scenario == S_CLASSIC_BALANCE) {
        q->token = NULL;
        classic_request(v, o, q);
    } else {
        v1_request(v, o, q);
    }
}
