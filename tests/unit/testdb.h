/* testdb.h -- what the SQLite-backed unit tests share: a fresh temporary
 * directory holding the test's database file, removed afterwards, and raw
 * SQL through a connection of its own (to set up states the ports cannot
 * make, and to check what they wrote). Failures fail the current test. */
#pragma once
#include <stdint.h>

struct testdb {
    char dir[64];   /* /tmp/concertd-<tag>-XXXXXX */
    char path[128]; /* dir/test.db */
};

void testdb_init(struct testdb *t, const char *tag);
/* Removes the database, its -wal and -shm files and the directory. */
void testdb_remove(struct testdb *t);
void testdb_exec(const struct testdb *t, const char *sql);
/* Column 0 of the one row sql returns. */
int64_t testdb_int(const struct testdb *t, const char *sql);
int64_t testdb_intf(const struct testdb *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
