/* url.h -- splitting SCHEME://HOST[:PORT][/PATH] addresses of backends
 * (redis:// for the waiting room and the event sink). */
#ifndef CONCERT_CORE_URL_H
#define CONCERT_CORE_URL_H

/* Splits url, which must start with scheme ("redis://"). *host is
 * malloc()ed; *port is default_port when there is none; *path points into
 * url just after the first '/' past the host, or is NULL when there is no
 * '/'. 0, or ERR_INVALID for another scheme, an empty host or a port that is
 * not 1..65535 (nothing is allocated then). */
int url_split(const char *url, const char *scheme, int default_port, char **host, int *port,
              const char **path);

#endif
