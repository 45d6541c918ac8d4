/* test_config.c -- the option table: defaults, environment, flags, errors
 * and the generated usage text (src/core/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/err.h"

static const char *const env_vars[] = {
    "CONCERT_DB",
    "CONCERT_LOG_LEVEL",
    "CONCERT_LOG_FORMAT",
    "CONCERT_LISTEN",
    "CONCERT_WORKERS",
    "CONCERT_MAX_CONNECTIONS",
    "CONCERT_MAX_CONNECTIONS_PER_IP",
    "CONCERT_CONNECTION_TIMEOUT",
    "CONCERT_MAX_BODY",
    "CONCERT_MAX_HEADER_BYTES",
    "CONCERT_SHUTDOWN_GRACE",
    "CONCERT_HOLD_TTL",
    "CONCERT_MAX_SEATS_PER_HOLD",
    "CONCERT_MAX_CHARGE",
    "CONCERT_CONCERTS",
    "CONCERT_SESSIONS_PER_CONCERT",
    "CONCERT_SEATS_PER_SESSION",
    "CONCERT_PRICE",
    "CONCERT_USERS",
    "CONCERT_BALANCE",
    NULL,
};

static int clear_env(void **state) {
    (void)state;
    for (int i = 0; env_vars[i]; i++) unsetenv(env_vars[i]);
    return 0;
}

static char errbuf[512];

/* Loads from a NULL-terminated argument list (argv[0] is added). */
#define LOAD(c, ...) load((c), (char *[]){"concertd", __VA_ARGS__, NULL})
#define LOAD0(c) load((c), (char *[]){"concertd", NULL})

static int load(struct config *c, char **argv) {
    int argc = 0;
    while (argv[argc]) argc++;
    errbuf[0] = '\0';
    return config_load(c, argc, argv, errbuf, sizeof(errbuf));
}

/* Asserts loading fails with exactly msg and leaves c untouched. */
#define REFUSED(msg, ...)                                                                          \
    do {                                                                                           \
        struct config c_;                                                                          \
        memset(&c_, 0x5A, sizeof(c_));                                                             \
        assert_int_equal(LOAD(&c_, __VA_ARGS__), ERR_INVALID);                                     \
        assert_string_equal(errbuf, (msg));                                                        \
        assert_int_equal(c_.nargs, 0x5A5A5A5A);                                                    \
    } while (0)

static void test_defaults_without_arguments(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD0(&c), 0);
    assert_int_equal(c.cmd, CMD_SERVE);
    assert_int_equal(c.help, 0);
    assert_int_equal(c.version, 0);
    assert_int_equal(c.nargs, 0);
    assert_string_equal(c.db, "sqlite:./concert.db");
    assert_int_equal(c.log_level, 1);  /* info */
    assert_int_equal(c.log_format, 0); /* text */
    assert_string_equal(c.listen, "0.0.0.0:8080");
    assert_int_equal(c.workers, 0);
    assert_int_equal(c.max_connections, 10000);
    assert_int_equal(c.max_connections_per_ip, 2000);
    assert_int_equal(c.connection_timeout_ms, 30000);
    assert_int_equal(c.max_body, 65536);
    assert_int_equal(c.max_header_bytes, 8192);
    assert_int_equal(c.shutdown_grace_ms, 10000);
    assert_int_equal(c.hold_ttl_ms, 300000);
    assert_int_equal(c.max_seats_per_hold, 4);
    assert_int_equal(c.max_charge, 10000000);
}

static void test_booking_options_and_their_bounds(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "--hold-ttl", "3s", "--max-seats-per-hold", "10", "--max-charge",
                          "9223372036854775807"),
                     0);
    assert_int_equal(c.hold_ttl_ms, 3000);
    assert_int_equal(c.max_seats_per_hold, 10);
    assert_int_equal(c.max_charge, INT64_MAX);
    setenv("CONCERT_HOLD_TTL", "1s", 1);
    setenv("CONCERT_MAX_CHARGE", "500", 1);
    assert_int_equal(LOAD0(&c), 0);
    assert_int_equal(c.hold_ttl_ms, 1000);
    assert_int_equal(c.max_charge, 500);
    REFUSED("invalid value \"999ms\" for --hold-ttl (CONCERT_HOLD_TTL): expected a duration "
            "(300, 300s, 250ms, 5m, 1h, 2d) between 1s and 1d",
            "--hold-ttl", "999ms");
    REFUSED("invalid value \"0\" for --max-seats-per-hold (CONCERT_MAX_SEATS_PER_HOLD): expected "
            "an integer between 1 and 100",
            "--max-seats-per-hold", "0");
    REFUSED("invalid value \"0\" for --max-charge (CONCERT_MAX_CHARGE): expected an integer "
            "between 1 and 9223372036854775807",
            "--max-charge", "0");
    REFUSED("option --hold-ttl is not valid for \"seed\"", "seed", "--hold-ttl", "5s");
}

static void test_seed_defaults(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "seed"), 0);
    assert_int_equal(c.cmd, CMD_SEED);
    assert_int_equal(c.seed_concerts, 3);
    assert_int_equal(c.seed_sessions_per_concert, 4);
    assert_int_equal(c.seed_seats_per_session, 50);
    assert_int_equal(c.seed_price, 0);
    assert_int_equal(c.seed_users, 1000);
    assert_int_equal(c.seed_balance, 0);
}

static void test_env_overrides_default(void **state) {
    (void)state;
    setenv("CONCERT_WORKERS", "8", 1);
    setenv("CONCERT_MAX_BODY", "1MiB", 1);
    setenv("CONCERT_LOG_LEVEL", "debug", 1);
    setenv("CONCERT_CONNECTION_TIMEOUT", "2m", 1);
    setenv("CONCERT_MAX_CONNECTIONS_PER_IP", "0", 1);
    struct config c;
    assert_int_equal(LOAD0(&c), 0);
    assert_int_equal(c.workers, 8);
    assert_int_equal(c.max_body, 1048576);
    assert_int_equal(c.log_level, 0);
    assert_int_equal(c.connection_timeout_ms, 120000);
    assert_int_equal(c.max_connections_per_ip, 0);
}

static void test_flag_overrides_env(void **state) {
    (void)state;
    setenv("CONCERT_WORKERS", "8", 1);
    setenv("CONCERT_DB", "sqlite:/env.db", 1);
    struct config c;
    assert_int_equal(LOAD(&c, "--workers", "3"), 0);
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.db, "sqlite:/env.db");
}

static void test_flag_equals_form(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "serve", "--workers=5", "--db=postgres://u:p@h/db?a=1", "--listen",
                          "127.0.0.1:9000", "--log-format=json"),
                     0);
    assert_int_equal(c.cmd, CMD_SERVE);
    assert_int_equal(c.workers, 5);
    assert_string_equal(c.db, "postgres://u:p@h/db?a=1");
    assert_string_equal(c.listen, "127.0.0.1:9000");
    assert_int_equal(c.log_format, 1);
}

static void test_last_flag_wins(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "--workers", "2", "--workers=7"), 0);
    assert_int_equal(c.workers, 7);
}

static void test_shutdown_grace_allows_zero_but_timeout_does_not(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "--shutdown-grace", "0", "--connection-timeout", "1500ms"), 0);
    assert_int_equal(c.shutdown_grace_ms, 0);
    assert_int_equal(c.connection_timeout_ms, 1500);
    REFUSED("invalid value \"0\" for --connection-timeout (CONCERT_CONNECTION_TIMEOUT): expected "
            "a duration (300, 300s, 250ms, 5m, 1h, 2d) between 1s and 1h",
            "--connection-timeout", "0");
}

static void test_bad_int_names_flag_env_and_bounds(void **state) {
    (void)state;
    REFUSED("invalid value \"abc\" for --workers (CONCERT_WORKERS): expected an integer between 0 "
            "and 1024",
            "--workers", "abc");
    REFUSED("invalid value \"1025\" for --workers (CONCERT_WORKERS): expected an integer between 0 "
            "and 1024",
            "--workers=1025");
    REFUSED("invalid value \"-1\" for --workers (CONCERT_WORKERS): expected an integer between 0 "
            "and 1024",
            "--workers", "-1");
}

static void test_bad_size_and_duration_show_units(void **state) {
    (void)state;
    REFUSED("invalid value \"32MiB\" for --max-body (CONCERT_MAX_BODY): expected a size (65536, "
            "64KiB, 1MiB, 1GiB) between 1KiB and 16MiB",
            "--max-body", "32MiB");
    REFUSED("invalid value \"6m\" for --shutdown-grace (CONCERT_SHUTDOWN_GRACE): expected a "
            "duration (300, 300s, 250ms, 5m, 1h, 2d) between 0s and 5m",
            "--shutdown-grace", "6m");
}

static void test_bad_enum_lists_choices(void **state) {
    (void)state;
    REFUSED("invalid value \"loud\" for --log-level (CONCERT_LOG_LEVEL): expected one of debug, "
            "info, warn, error, off",
            "--log-level", "loud");
}

static void test_empty_string_rejected(void **state) {
    (void)state;
    REFUSED("invalid value \"\" for --db (CONCERT_DB): expected a non-empty string", "--db=");
}

static void test_bad_env_value_says_from_environment(void **state) {
    (void)state;
    setenv("CONCERT_MAX_BODY", "lots", 1);
    REFUSED("invalid value \"lots\" for --max-body (CONCERT_MAX_BODY) from environment: expected "
            "a size (65536, 64KiB, 1MiB, 1GiB) between 1KiB and 16MiB",
            "serve");
}

static void test_env_of_other_command_is_ignored(void **state) {
    (void)state;
    setenv("CONCERT_PRICE", "abc", 1);
    setenv("CONCERT_LISTEN", "", 1);
    struct config c;
    assert_int_equal(LOAD(&c, "migrate"), 0);
    assert_int_equal(c.cmd, CMD_MIGRATE);
    REFUSED("invalid value \"abc\" for --price (CONCERT_PRICE) from environment: expected an "
            "integer between 0 and 100000000",
            "seed");
}

static void test_option_of_wrong_subcommand(void **state) {
    (void)state;
    REFUSED("option --price is not valid for \"serve\"", "--price", "5");
    REFUSED("option --listen is not valid for \"seed\"", "seed", "--listen=:1");
    REFUSED("option --workers is not valid for \"import\"", "import", "--workers", "2", "a.json");
}

static void test_unknown_option(void **state) {
    (void)state;
    REFUSED("unknown option --foo (see --help)", "--foo");
    REFUSED("unknown option --foo (see --help)", "seed", "--foo=1");
    REFUSED("unknown option -x (see --help)", "-x");
    REFUSED("unknown command \"frobnicate\" (see --help)", "frobnicate");
}

static void test_missing_value(void **state) {
    (void)state;
    REFUSED("option --db needs a value", "--db");
    REFUSED("option --db needs a value", "--db", "--listen", "x");
}

static void test_import_takes_positional_args(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "import", "--db", "sqlite:x.db", "event.json", "more.json"), 0);
    assert_int_equal(c.cmd, CMD_IMPORT);
    assert_string_equal(c.db, "sqlite:x.db");
    assert_int_equal(c.nargs, 2);
    assert_string_equal(c.args[0], "event.json");
    assert_string_equal(c.args[1], "more.json");
}

static void test_double_dash_ends_options(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "import", "--", "--weird.json"), 0);
    assert_int_equal(c.nargs, 1);
    assert_string_equal(c.args[0], "--weird.json");
}

static void test_too_many_positional_args(void **state) {
    (void)state;
    REFUSED("too many arguments (at most 8)", "import", "1", "2", "3", "4", "5", "6", "7", "8",
            "9");
}

static void test_seed_options(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "seed", "--concerts", "10", "--price=5000", "--balance",
                          "1000000000000", "--db", "sqlite:seed.db"),
                     0);
    assert_int_equal(c.seed_concerts, 10);
    assert_int_equal(c.seed_price, 5000);
    assert_true(c.seed_balance == INT64_C(1000000000000));
    assert_string_equal(c.db, "sqlite:seed.db");
}

static void test_help_and_version_anywhere(void **state) {
    (void)state;
    struct config c;
    assert_int_equal(LOAD(&c, "--help"), 0);
    assert_int_equal(c.help, 1);
    assert_int_equal(c.version, 0);
    assert_int_equal(LOAD(&c, "-h"), 0);
    assert_int_equal(c.help, 1);
    assert_int_equal(LOAD(&c, "seed", "-V"), 0);
    assert_int_equal(c.cmd, CMD_SEED);
    assert_int_equal(c.version, 1);
    assert_int_equal(c.help, 0);
    assert_int_equal(LOAD(&c, "import", "x.json", "--version"), 0);
    assert_int_equal(c.version, 1);
    assert_int_equal(c.nargs, 1);
}

static void test_cmd_names(void **state) {
    (void)state;
    assert_string_equal(config_cmd_name(CMD_SERVE), "serve");
    assert_string_equal(config_cmd_name(CMD_SEED), "seed");
    assert_string_equal(config_cmd_name(CMD_IMPORT), "import");
    assert_string_equal(config_cmd_name(CMD_MIGRATE), "migrate");
}

static void test_usage_is_generated_from_table(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_usage(f);
    fclose(f);
    static const char *const want[] = {
        "usage: concertd [serve|seed|import|migrate] [options]\n",
        "       concertd import [--db URL] EVENT.json\n",
        "Options for all commands:\n",
        "\nOptions for serve:\n",
        "\nOptions for seed:\n",
        "  --max-body SIZE                (env CONCERT_MAX_BODY, default 64KiB) largest request "
        "body (413 above)\n",
        "  --db URL                       (env CONCERT_DB, default sqlite:./concert.db) database "
        "URL: sqlite:PATH or postgres://USER@HOST:PORT/DB\n",
        "(env CONCERT_LOG_LEVEL, default info) log verbosity: debug|info|warn|error|off\n",
        "  --connection-timeout DURATION  (env CONCERT_CONNECTION_TIMEOUT, default 30s)",
        "  --price N ",
        "(env CONCERT_SESSIONS_PER_CONCERT, default 4)",
        NULL,
    };
    for (int i = 0; want[i]; i++) {
        if (!strstr(text, want[i])) fail_msg("usage lacks \"%s\" in:\n%s", want[i], text);
    }
    /* Seed options are listed under seed, after serve's. */
    assert_true(strstr(text, "--price") > strstr(text, "Options for seed:"));
    assert_true(strstr(text, "--listen") < strstr(text, "Options for seed:"));
    free(text);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, clear_env, clear_env)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_defaults_without_arguments),
        T(test_seed_defaults),
        T(test_booking_options_and_their_bounds),
        T(test_env_overrides_default),
        T(test_flag_overrides_env),
        T(test_flag_equals_form),
        T(test_last_flag_wins),
        T(test_shutdown_grace_allows_zero_but_timeout_does_not),
        T(test_bad_int_names_flag_env_and_bounds),
        T(test_bad_size_and_duration_show_units),
        T(test_bad_enum_lists_choices),
        T(test_empty_string_rejected),
        T(test_bad_env_value_says_from_environment),
        T(test_env_of_other_command_is_ignored),
        T(test_option_of_wrong_subcommand),
        T(test_unknown_option),
        T(test_missing_value),
        T(test_import_takes_positional_args),
        T(test_double_dash_ends_options),
        T(test_too_many_positional_args),
        T(test_seed_options),
        T(test_help_and_version_anywhere),
        T(test_cmd_names),
        T(test_usage_is_generated_from_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
