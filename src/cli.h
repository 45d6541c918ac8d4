/* cli.h -- the subcommands besides serve: seed, import, migrate. Each opens
 * the store named by --db, applies migrations, does its one job, prints a
 * line saying what it did, and returns the process exit status. */
#pragma once

struct config;
struct store;

int cli_seed(const struct config *c);
int cli_import(const struct config *c);
int cli_migrate(const struct config *c);

/* Opens c->db and migrates it; on failure prints why and returns non-zero. */
int cli_open_store(const struct config *c, struct store **out);
