/* seed.c -- the demo data layout of `concertd seed`, shared by the store
 * adapters (sqlite.c, pg.c), so both seed the very same rows: the venues of
 * the demo concerts and the seat blocks of each session. Not here: writing
 * them (each adapter's seed op). */
#include "store/store.h"

static const char *const SEED_VENUES[] = {
    "KSPO Dome, Seoul",        "Olympic Hall, Seoul", "Jamsil Arena, Seoul",
    "Sejong Center, Seoul",    "Blue Square, Seoul",  "Gocheok Sky Dome, Seoul",
    "BEXCO Auditorium, Busan", "Daegu EXCO, Daegu",
};

const char *store_seed_venue(int64_t concert_id) {
    size_t n = sizeof(SEED_VENUES) / sizeof(SEED_VENUES[0]);
    return SEED_VENUES[(size_t)(concert_id > 0 ? concert_id - 1 : 0) % n];
}

size_t store_seed_blocks(const struct store_seed *o, struct store_block b[3]) {
    int64_t n = o->seats_per_session;
    if (n <= 0) return 0;
    if (o->price > 0) {
        b[0] = (struct store_block){"R", o->price, 1, n};
        return 1;
    }
    int64_t vip = n / 5 > 0 ? n / 5 : 1;
    int64_t r = vip + n * 3 / 10 < n ? vip + n * 3 / 10 : n;
    size_t k = 0;
    b[k++] = (struct store_block){"VIP", 150000, 1, vip};
    if (r > vip) b[k++] = (struct store_block){"R", 120000, vip + 1, r};
    if (n > r) b[k++] = (struct store_block){"S", 90000, r + 1, n};
    return k;
}
