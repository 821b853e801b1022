/*
 * A small test harness for the C tests of tenure: checks that report and return, bounded
 * waits, a monotonic clock, and a TCP proxy that can cut a client off from the server.
 *
 * Written in the common subset of C99 and C++ (the tests are compiled as both).
 */
#ifndef TENURE_TEST_HARNESS_H
#define TENURE_TEST_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tenure.h"

/* ---- reporting ---------------------------------------------------------------------- */

static const char *g_fail_where = NULL;
static char g_fail_what[512];

/* Fails the current test (records where and what) and returns 1 from it. */
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            snprintf(g_fail_what, sizeof g_fail_what, "%s", #cond);                       \
            g_fail_where = __FILE__ ":" TEST_STR(__LINE__);                               \
            return 1;                                                                     \
        }                                                                                 \
    } while (0)

/* Checks that a call returns the expected status; on a mismatch reports both and the last
 * error message. */
#define CHECK_ST(call, expected)                                                          \
    do {                                                                                  \
        tenure_status st_ = (call);                                                       \
        if (st_ != (expected)) {                                                          \
            char m_[256];                                                                 \
            size_t n_ = 0;                                                                \
            m_[0] = 0;                                                                    \
            (void)tenure_last_error(m_, sizeof m_, &n_);                                  \
            snprintf(g_fail_what, sizeof g_fail_what, "%s returned %d (%s), expected %s; " \
                     "last error: %s", #call, (int)st_, tenure_status_str((uint32_t)st_),  \
                     #expected, m_);                                                      \
            g_fail_where = __FILE__ ":" TEST_STR(__LINE__);                               \
            return 1;                                                                     \
        }                                                                                 \
    } while (0)

#define CHECK_OK(call) CHECK_ST(call, TENURE_STATUS_OK)

#define TEST_STR2(x) #x
#define TEST_STR(x) TEST_STR2(x)

typedef int (*test_fn)(void);

typedef struct test_case {
    const char *name;
    test_fn fn;
} test_case;

/* Runs the tests whose name contains `filter` (all when NULL); prints one line per test and a
 * closing "N passed, N failed" line. Returns the process exit code. */
static int run_tests(const char *suite, const test_case *tests, size_t n, const char *filter) {
    int passed = 0, failed = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        int r;
        if (filter && !strstr(tests[i].name, filter)) {
            continue;
        }
        g_fail_where = NULL;
        g_fail_what[0] = 0;
        fflush(stdout);
        r = tests[i].fn();
        if (r == 0) {
            passed++;
            printf("ok   %s\n", tests[i].name);
        } else {
            failed++;
            printf("FAIL %s: %s at %s\n", tests[i].name, g_fail_what,
                   g_fail_where ? g_fail_where : "?");
        }
        fflush(stdout);
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed == 0 ? 0 : 1;
}

/* ---- time and bounded waits ---------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A counter shared with callbacks. */
typedef struct counter {
    pthread_mutex_t mu;
    int value;
} counter;

static void counter_init(counter *c) {
    pthread_mutex_init(&c->mu, NULL);
    c->value = 0;
}

static void counter_add(counter *c, int d) {
    pthread_mutex_lock(&c->mu);
    c->value += d;
    pthread_mutex_unlock(&c->mu);
}

static int counter_get(counter *c) {
    int v;
    pthread_mutex_lock(&c->mu);
    v = c->value;
    pthread_mutex_unlock(&c->mu);
    return v;
}

/* Waits until *c >= target or `limit_ms` passed; true when reached. */
static int wait_count(counter *c, int target, int limit_ms) {
    double end = now_ms() + limit_ms;
    while (counter_get(c) < target) {
        if (now_ms() > end) {
            return 0;
        }
        sleep_ms(2);
    }
    return 1;
}

/* ---- an embedded server and clients -------------------------------------------------- */

/* Starts a server on a free loopback port with no durability; writes its address. */
static tenure_status start_server(tenure_server **server, char *addr, size_t addr_len) {
    tenure_server_builder *b = NULL;
    size_t n = 0;
    tenure_status st = tenure_server_builder_new(&b);
    if (st != TENURE_STATUS_OK) return st;
    st = tenure_server_builder_set_listen(b, "127.0.0.1:0");
    if (st == TENURE_STATUS_OK) st = tenure_server_builder_set_durability(b, TENURE_DURABILITY_NONE);
    if (st != TENURE_STATUS_OK) {
        tenure_server_builder_free(b);
        return st;
    }
    st = tenure_server_start(b, server);
    if (st != TENURE_STATUS_OK) return st;
    return tenure_server_address(*server, addr, addr_len, &n);
}

/* Connects a client to `addr` with a session TTL. */
static tenure_status connect_client(const char *addr, uint64_t ttl_ms, tenure_client **client) {
    tenure_client_builder *b = NULL;
    tenure_status st = tenure_client_builder_new(&b);
    if (st != TENURE_STATUS_OK) return st;
    st = tenure_client_builder_add_endpoint(b, addr);
    if (st == TENURE_STATUS_OK) st = tenure_client_builder_set_session_ttl_ms(b, ttl_ms);
    if (st != TENURE_STATUS_OK) {
        tenure_client_builder_free(b);
        return st;
    }
    return tenure_client_connect(b, client);
}

/* A callback value (works in C and C++, where compound literals are not allowed). */
static tenure_callback make_cb(void (*call)(void *, const tenure_event *), void (*drop)(void *),
                               void *user_data) {
    tenure_callback cb;
    cb.call = call;
    cb.drop = drop;
    cb.user_data = user_data;
    return cb;
}

static tenure_callback no_cb(void) {
    return make_cb(NULL, NULL, NULL);
}

/* ---- a TCP proxy that can cut its clients off ------------------------------------------ */

#define PROXY_MAX 16

typedef struct proxy {
    int listen_fd;
    int upstream_port;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    int blackhole; /* when set: data is read and dropped, new connections are closed */
    int stop;
    int pairs[PROXY_MAX][2];
    int npairs;
} proxy;

static int proxy_connect_upstream(int port) {
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void proxy_drop_pair(proxy *p, int i) {
    close(p->pairs[i][0]);
    close(p->pairs[i][1]);
    p->pairs[i][0] = p->pairs[p->npairs - 1][0];
    p->pairs[i][1] = p->pairs[p->npairs - 1][1];
    p->npairs--;
}

static void *proxy_run(void *arg) {
    proxy *p = (proxy *)arg;
    char buf[65536];
    for (;;) {
        struct pollfd fds[1 + 2 * PROXY_MAX];
        int nfds = 1, i, stop, blackhole;
        pthread_mutex_lock(&p->mu);
        stop = p->stop;
        blackhole = p->blackhole;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        fds[0].fd = p->listen_fd;
        fds[0].events = POLLIN;
        for (i = 0; i < p->npairs; i++) {
            fds[nfds].fd = p->pairs[i][0];
            fds[nfds++].events = POLLIN;
            fds[nfds].fd = p->pairs[i][1];
            fds[nfds++].events = POLLIN;
        }
        if (poll(fds, (nfds_t)nfds, 20) <= 0) continue;
        if (fds[0].revents & POLLIN) {
            int c = accept(p->listen_fd, NULL, NULL);
            if (c >= 0) {
                int u = blackhole || p->npairs >= PROXY_MAX ? -1
                                                             : proxy_connect_upstream(p->upstream_port);
                if (u < 0) {
                    close(c);
                } else {
                    p->pairs[p->npairs][0] = c;
                    p->pairs[p->npairs][1] = u;
                    p->npairs++;
                }
            }
        }
        for (i = 0; i < p->npairs; i++) {
            int side;
            for (side = 0; side < 2; side++) {
                struct pollfd *f = &fds[1 + 2 * i + side];
                if (f->fd != p->pairs[i][side] || !(f->revents & (POLLIN | POLLHUP | POLLERR))) {
                    continue;
                }
                {
                    ssize_t r = read(f->fd, buf, sizeof buf);
                    if (r <= 0) {
                        proxy_drop_pair(p, i);
                        i = p->npairs; /* the fds array no longer matches; poll again */
                        break;
                    }
                    if (!blackhole) {
                        ssize_t off = 0;
                        while (off < r) {
                            ssize_t w = write(p->pairs[i][1 - side], buf + off, (size_t)(r - off));
                            if (w <= 0) break;
                            off += w;
                        }
                    }
                }
            }
        }
    }
    while (p->npairs > 0) proxy_drop_pair(p, 0);
    return NULL;
}

/* Starts a proxy on a free loopback port forwarding to 127.0.0.1:upstream_port. */
static int proxy_start(proxy *p, int upstream_port) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->upstream_port = upstream_port;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->listen_fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    if (listen(p->listen_fd, 16) != 0) return -1;
    if (getsockname(p->listen_fd, (struct sockaddr *)&a, &len) != 0) return -1;
    p->port = ntohs(a.sin_port);
    return pthread_create(&p->thread, NULL, proxy_run, p) == 0 ? 0 : -1;
}

static void proxy_set_blackhole(proxy *p, int on) {
    pthread_mutex_lock(&p->mu);
    p->blackhole = on;
    pthread_mutex_unlock(&p->mu);
}

static void proxy_stop(proxy *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    pthread_mutex_destroy(&p->mu);
}

static int port_of(const char *addr) {
    const char *colon = strrchr(addr, ':');
    return colon ? atoi(colon + 1) : 0;
}

#endif /* TENURE_TEST_HARNESS_H */
