/* routes.h -- the handlers api/ exports to the route tables (routes.c for
 * v1, classic.c for the classic API), and what the two tables share: the
 * gate, and the booking calls behind both, each with the table's own
 * encoder. */
#pragma once
#include "api/api.h"

struct store_hold;
struct store_pay;
struct store_payment;

void api_health_live(struct api_req *r, struct api_res *w);
void api_health_ready(struct api_req *r, struct api_res *w);
void api_metrics(struct api_req *r, struct api_res *w);
void api_concerts_list(struct api_req *r, struct api_res *w);
void api_sessions_list(struct api_req *r, struct api_res *w);
void api_seats_list(struct api_req *r, struct api_res *w);
void api_queue_enter_check(struct api_req *r, struct api_res *w); /* its precheck */
void api_queue_enter(struct api_req *r, struct api_res *w);
void api_queue_status(struct api_req *r, struct api_res *w);
void api_queue_leave(struct api_req *r, struct api_res *w);
void api_queue_stats(struct api_req *r, struct api_res *w);
void api_admin_waiting_room(struct api_req *r, struct api_res *w);

/* The waiting-room gate of the protected routes: the request's QUEUE-TOKEN
 * must be ACTIVATED and, when want_user > 0, belong to that user. Returns 0
 * and sets *user (may be NULL) to the token's user; otherwise writes the
 * 401/403 (or 503) and returns nonzero. */
int api_gate(struct api_req *r, struct api_res *w, int64_t want_user, int64_t *user);
/* The gate in two steps, for a route that makes an exception: the verdict
 * (and the token's user, 0 when unknown) without answering; nonzero with
 * the 503 written when the queue failed, or with the 401/403 of api/auth.h
 * when authentication is on and the token's user is not the bearer's. Then the 401/403 of a verdict. */
int api_gate_check(struct api_req *r, struct api_res *w, int64_t want_user, int *verdict,
                   int64_t *user);
void api_gate_refuse(struct api_req *r, struct api_res *w, int verdict);
void api_reservation_check(struct api_req *r, struct api_res *w); /* its precheck */
void api_reservation_create(struct api_req *r, struct api_res *w);
void api_reservation_get(struct api_req *r, struct api_res *w);
void api_reservation_cancel(struct api_req *r, struct api_res *w);
void api_balance_get(struct api_req *r, struct api_res *w);
void api_balance_charge(struct api_req *r, struct api_res *w);
void api_balance_charge_check(struct api_req *r, struct api_res *w);
void api_payment_create(struct api_req *r, struct api_res *w);

/* ---- shared by the v1 handlers and the classic table (classic.c) ---------- */

/* The success body of a balance read or charge, made by each API. */
typedef void (*api_balance_reply)(struct api_req *r, struct api_res *w, int64_t user,
                                  int64_t balance);
/* The success body of a payment, made by each API. */
typedef void (*api_payment_reply)(struct api_req *r, struct api_res *w,
                                  const struct store_payment *p);

/* The concert list: v1's {"concerts":[...]} when wrapped, else the classic
 * bare array of the same objects. */
void api_concerts_reply(struct api_req *r, struct api_res *w, int wrapped);
/* Answers with user's balance (reply) or the error. */
void api_balance_read(struct api_req *r, struct api_res *w, int64_t user, api_balance_reply reply);
/* Charges amount to user (Idempotency-Key honoured) and answers: reply with
 * the new balance, or the 400/5xx. */
void api_charge(struct api_req *r, struct api_res *w, int64_t user, int64_t amount,
                api_balance_reply reply);
/* Pays p (decoded; the caller has passed the gate and is p->user_id) with
 * the Idempotency-Key honoured, answers (reply, or the 402/403/404/409/503)
 * and expires the payer's waiting-room token once paid. stated: the amount
 * the payer states, which must be the price (409 AMOUNT_MISMATCH), or NULL. */
void api_pay(struct api_req *r, struct api_res *w, struct store_pay *p, const int64_t *stated,
             api_payment_reply reply);
/* A payment retried after it went through: its payer's token is gone, so
 * the gate refuses it. With an Idempotency-Key whose stored response is for
 * this very request of user, answers with that response and returns 1;
 * otherwise 0 with nothing written. */
int api_pay_replay(struct api_req *r, struct api_res *w, int64_t user);
/* The 400/404/409 (or 5xx) of a hold that failed with rc (errbuf: the
 * service's message for ERR_INVALID). */
void api_hold_refused(struct api_req *r, struct api_res *w, int rc, const struct store_hold *h,
                      const char *errbuf);
