/*
 * One C process of tests/interop/run.py: takes the lock NAME ROUNDS times through the etcd
 * backend and, while holding it, creates the marker file MARKER with O_EXCL (which fails if
 * another holder's marker is there: two holders at once), records "token grant_ns" in OUT,
 * removes the marker and releases.
 *
 *   lock ENDPOINTS NAME ROUNDS MARKER OUT
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tenure.h"

static int fail(const char *what, tenure_status st) {
    char msg[256];
    size_t n;
    if (tenure_last_error(msg, sizeof msg, &n) != TENURE_STATUS_OK) {
        msg[0] = 0;
    }
    fprintf(stderr, "c: %s: %s (%s)\n", what, tenure_status_str(st), msg);
    return 1;
}

int main(int argc, char **argv) {
    tenure_client_builder *cb;
    tenure_client *client;
    tenure_status st;
    tenure_callback none = {NULL, NULL, NULL};
    struct timespec hold = {0, 2 * 1000 * 1000};
    FILE *out;
    int rounds, i;
    if (argc != 6) {
        fprintf(stderr, "usage: lock ENDPOINTS NAME ROUNDS MARKER OUT\n");
        return 64;
    }
    rounds = atoi(argv[3]);
    out = fopen(argv[5], "w");
    if (!out) {
        perror(argv[5]);
        return 1;
    }
    if ((st = tenure_client_builder_new(&cb)) != TENURE_STATUS_OK) return fail("builder", st);
    if ((st = tenure_client_builder_add_endpoint(cb, argv[1])) != TENURE_STATUS_OK)
        return fail("endpoint", st);
    if ((st = tenure_client_builder_set_session_ttl_ms(cb, 5000)) != TENURE_STATUS_OK)
        return fail("ttl", st);
    if ((st = tenure_client_connect(cb, &client)) != TENURE_STATUS_OK) return fail("connect", st);
    for (i = 0; i < rounds; i++) {
        tenure_lock *lock;
        struct timespec now;
        int fd;
        if ((st = tenure_client_lock(client, argv[2], 30000, none, &lock)) != TENURE_STATUS_OK)
            return fail("lock", st);
        clock_gettime(CLOCK_REALTIME, &now);
        fd = open(argv[4], O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd < 0) {
            fprintf(stderr, "c: two holders at once (marker: %s)\n", strerror(errno));
            return 2;
        }
        close(fd);
        fprintf(out, "%llu %lld\n", (unsigned long long)tenure_lock_fencing_token(lock),
                (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
        nanosleep(&hold, NULL);
        unlink(argv[4]);
        if ((st = tenure_lock_release(lock)) != TENURE_STATUS_OK) return fail("release", st);
    }
    fclose(out);
    tenure_client_free(client);
    return 0;
}
