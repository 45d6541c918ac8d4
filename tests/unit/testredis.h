/* testredis.h -- a throwaway redis-server for unit tests that run an
 * adapter against the real thing: started on a free loopback port with no
 * persistence (its files in a temporary directory), stopped by PID. The
 * server also gets SIGTERM when the test process dies. */
#pragma once
#include <sys/types.h>

struct testredis {
    pid_t pid;
    int port;
    char url[64]; /* redis://127.0.0.1:PORT */
    char dir[64]; /* /tmp/concertd-redis-XXXXXX */
};

/* 0 once it answers PING; -1 with a message on stderr when redis-server is
 * not installed or does not answer within 10 s. */
int testredis_start(struct testredis *r);
void testredis_stop(struct testredis *r);
