/* web.h -- the fans' pages (web/): a fixed set of files, read into memory
 * once at start-up and served from there.
 *
 * The set of files is the route table api_routes_web[] (web.c): a request
 * path either is one of those exact paths or never reaches this module, so
 * no request can name a file on disk. Not here: templating beyond the one
 * placeholder below, directory listings, anything written at run time. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct web_site;

/* Reads every file of the set from root (a directory). The placeholder
 * {{maxSeatsPerHold}} in an HTML file becomes max_seats_per_hold, so the
 * booking page knows the hold limit. Returns 0 and *out (free with
 * web_free), or ERR_IO / ERR_INVALID with errbuf naming the file. */
int web_load(const char *root, int64_t max_seats_per_hold, struct web_site **out, char *errbuf,
             size_t errlen);
void web_free(struct web_site *s);
/* How many files the site holds (for the start-up log). */
size_t web_file_count(const struct web_site *s);
