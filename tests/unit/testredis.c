/* testredis.c -- see testredis.h. */
#include "testredis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int answers_ping(int port) {
    struct timeval tv = {.tv_sec = 1};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
}

int testredis_start(struct testredis *r) {
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/concertd-redis-XXXXXX");
    if (!mkdtemp(r->dir) || (r->port = free_port()) < 0) {
        perror("testredis: temp dir or port");
        return -1;
    }
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
    char port[16];
    snprintf(port, sizeof(port), "%d", r->port);
    r->pid = fork();
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", r->dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; r->pid > 0 && i < 200; i++) {
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            fprintf(stderr,
                    "testredis: redis-server exited (%d): is it installed? "
                    "(scripts/deps)\n",
                    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            r->pid = 0;
            break;
        }
        if (answers_ping(r->port)) return 0;
        nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
    }
    if (r->pid > 0) fprintf(stderr, "testredis: redis-server did not answer within 10 s\n");
    testredis_stop(r);
    return -1;
}

void testredis_stop(struct testredis *r) {
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
    if (r->dir[0]) rmdir(r->dir);
    r->dir[0] = '\0';
}
