/* test_sink_kafka.c -- the Kafka event sink (src/sink/kafka.c) against
 * librdkafka's built-in mock cluster (rdkafka_mock.h): a published batch
 * can be consumed back, every event once, as the sink's JSON, keyed by the
 * aggregate id, in order per key and partition; a failed delivery (broker
 * down, a refused produce) fails the publish, and the sink recovers when
 * the cluster does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/timeutil.h"
#include "sink/sink.h"

#define TOPIC "concert-events"
#define PARTITIONS 4
#define MAXMSG 256
#define PRODUCE_API 0 /* the Kafka protocol's ApiKey of Produce */

struct mock {
    rd_kafka_t *rk; /* the handle the mock cluster needs for its book keeping */
    rd_kafka_mock_cluster_t *mc;
    char url[256];
};

struct consumed {
    int64_t id, aggregate_id;
    int32_t partition;
    char key[24];
    char topic[64];
    char payload[128];
};

static int setup(void **state) {
    static struct mock m;
    char err[256];
    m.rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof(err));
    assert_non_null(m.rk);
    m.mc = rd_kafka_mock_cluster_new(m.rk, 1);
    assert_non_null(m.mc);
    assert_int_equal(rd_kafka_mock_topic_create(m.mc, TOPIC, PARTITIONS, 1), 0);
    snprintf(m.url, sizeof(m.url), "kafka://%s/%s", rd_kafka_mock_cluster_bootstraps(m.mc), TOPIC);
    *state = &m;
    return 0;
}

static int teardown(void **state) {
    struct mock *m = *state;
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->rk);
    return 0;
}

static struct sink *open_sink(struct mock *m, int timeout_ms) {
    struct sink *k = NULL;
    char err[256];
    if (timeout_ms == 0) /* the --events path, with the default timeout */
        assert_int_equal(sink_open(m->url, &k, err, sizeof(err)), 0);
    else
        assert_int_equal(sink_kafka_open(m->url, timeout_ms, &k, err, sizeof(err)), 0);
    assert_string_equal(k->kind, "kafka");
    return k;
}

/* Events first..first+n-1, aggregates cycling over 5 ids. */
static void make_events(struct sink_event *ev, char (*payload)[64], int64_t first, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int64_t id = first + (int64_t)i;
        snprintf(payload[i], sizeof(payload[i]), "{\"paymentId\":%lld,\"amount\":1000}",
                 (long long)id);
        ev[i] = (struct sink_event){id, "payment.completed", 100 + id % 5, payload[i],
                                    1795267611000 + id};
    }
}

static void decode(const rd_kafka_message_t *m, struct consumed *c) {
    json_error_t je;
    json_t *o = json_loadb(m->payload, m->len, 0, &je);
    assert_non_null(o);
    json_int_t id = 0, agg = 0;
    const char *topic = NULL, *at = NULL;
    json_t *payload = NULL;
    assert_int_equal(json_unpack(o, "{sI ss sI so ss !}", "id", &id, "topic", &topic, "aggregateId",
                                 &agg, "payload", &payload, "createdAt", &at),
                     0);
    c->id = id;
    c->aggregate_id = agg;
    c->partition = m->partition;
    snprintf(c->topic, sizeof(c->topic), "%s", topic);
    char *p = json_dumps(payload, JSON_COMPACT);
    snprintf(c->payload, sizeof(c->payload), "%s", p);
    free(p);
    snprintf(c->key, sizeof(c->key), "%.*s", (int)m->key_len, (const char *)m->key);
    char want_at[32];
    time_format_rfc3339(1795267611000 + id, want_at, sizeof(want_at));
    assert_string_equal(at, want_at);
    json_decref(o);
}

/* Every message of the topic from the beginning, until want arrived or 15 s. */
static size_t consume_all(struct mock *m, struct consumed *out, size_t want) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(m->mc);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int32_t p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    size_t n = 0;
    int64_t deadline = time_now_ms() + 15000;
    while (n < want && time_now_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 100);
        if (!msg) continue;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && n < MAXMSG) decode(msg, &out[n++]);
        rd_kafka_message_destroy(msg);
    }
    /* anything beyond want (a duplicate) would show up within this poll */
    rd_kafka_message_t *extra = rd_kafka_consumer_poll(c, 500);
    if (extra) {
        if (extra->err == RD_KAFKA_RESP_ERR_NO_ERROR && n < MAXMSG) decode(extra, &out[n++]);
        rd_kafka_message_destroy(extra);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

static void assert_each_once_in_key_order(const struct consumed *got, size_t n, int64_t first,
                                          size_t want) {
    assert_int_equal(n, want);
    int seen[MAXMSG] = {0};
    for (size_t i = 0; i < n; i++) {
        int64_t id = got[i].id;
        assert_true(id >= first && id < first + (int64_t)want);
        assert_int_equal(seen[id - first]++, 0);
        assert_string_equal(got[i].topic, "payment.completed");
        assert_int_equal(got[i].aggregate_id, 100 + id % 5);
        char key[24], payload[64];
        snprintf(key, sizeof(key), "%lld", (long long)got[i].aggregate_id);
        assert_string_equal(got[i].key, key);
        snprintf(payload, sizeof(payload), "{\"paymentId\":%lld,\"amount\":1000}", (long long)id);
        assert_string_equal(got[i].payload, payload);
        /* one aggregate, one partition, ids increasing in it */
        for (size_t j = 0; j < i; j++) {
            if (got[j].aggregate_id != got[i].aggregate_id) continue;
            assert_int_equal(got[j].partition, got[i].partition);
            assert_true(got[j].id < got[i].id);
        }
    }
}

/* At least once: after dedupe by id, exactly first..first+want-1. */
static void assert_ids_after_dedupe(const struct consumed *got, size_t n, int64_t first,
                                    size_t want) {
    int seen[MAXMSG] = {0};
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(got[i].id >= first && got[i].id < first + (int64_t)want);
        if (!seen[got[i].id - first]++) distinct++;
    }
    assert_int_equal(distinct, want);
}

static void test_published_batch_is_consumed_once_in_order_per_aggregate(void **state) {
    struct mock *m = *state;
    struct sink *k = open_sink(m, 0);
    struct sink_event ev[60];
    char payload[60][64];
    make_events(ev, payload, 1, 40);
    assert_int_equal(k->ops->publish(k, ev, 40), 0);
    make_events(ev, payload, 41, 20);
    assert_int_equal(k->ops->publish(k, ev, 20), 0);
    assert_int_equal(k->ops->publish(k, ev, 0), 0);
    static struct consumed got[MAXMSG];
    size_t n = consume_all(m, got, 60);
    assert_each_once_in_key_order(got, n, 1, 60);
    int partitions_used[PARTITIONS] = {0};
    for (size_t i = 0; i < n; i++) partitions_used[got[i].partition] = 1;
    int used = 0;
    for (int p = 0; p < PARTITIONS; p++) used += partitions_used[p];
    assert_true(used > 1); /* keys spread: the key, not one fixed partition, decides */
    k->ops->close(k);
}

static void test_refused_produce_fails_the_publish(void **state) {
    struct mock *m = *state;
    struct sink *k = open_sink(m, 3000);
    struct sink_event ev[3];
    char payload[3][64];
    make_events(ev, payload, 101, 3);
    /* not retriable: the delivery reports fail at once */
    rd_kafka_mock_push_request_errors(
        m->mc, PRODUCE_API, 4, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_int_not_equal(k->ops->publish(k, ev, 3), 0);
    rd_kafka_mock_clear_request_errors(m->mc, PRODUCE_API);
    assert_int_equal(k->ops->publish(k, ev, 3), 0); /* the relay's retry */
    k->ops->close(k);
    static struct consumed got[MAXMSG];
    assert_ids_after_dedupe(got, consume_all(m, got, 3), 101, 3);
}

static void test_broker_down_fails_the_publish_and_up_again_delivers(void **state) {
    struct mock *m = *state;
    struct sink *k = open_sink(m, 1500);
    struct sink_event ev[5];
    char payload[5][64];
    make_events(ev, payload, 201, 5);
    assert_int_equal(rd_kafka_mock_broker_set_down(m->mc, 1), 0);
    int64_t t0 = time_now_ms();
    assert_int_not_equal(k->ops->publish(k, ev, 5), 0);
    assert_true(time_now_ms() - t0 < 1500 + 5000 + 2000); /* bounded by the timeout */
    assert_int_equal(rd_kafka_mock_broker_set_up(m->mc, 1), 0);
    int ok = -1;
    for (int i = 0; i < 5 && ok != 0; i++) ok = k->ops->publish(k, ev, 5); /* relay passes */
    assert_int_equal(ok, 0);
    k->ops->close(k);
    static struct consumed got[MAXMSG];
    assert_ids_after_dedupe(got, consume_all(m, got, 5), 201, 5);
}

static void test_bad_urls_are_refused(void **state) {
    (void)state;
    const char *bad[] = {"kafka://",        "kafka://b:9092", "kafka:///t",
                         "kafka://b:9092/", "kafka://b/t/u",  "redis://b/t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sink *k = NULL;
        char err[256] = "";
        assert_int_equal(sink_kafka_open(bad[i], 0, &k, err, sizeof(err)), ERR_INVALID);
        assert_non_null(strstr(err, "kafka://BROKER"));
        assert_null(k);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_published_batch_is_consumed_once_in_order_per_aggregate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_produce_fails_the_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_down_fails_the_publish_and_up_again_delivers,
                                        setup, teardown),
        cmocka_unit_test(test_bad_urls_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
