/*
 * Cost of C getter calls into libtenure, measured from C through the shared library (PLT
 * call, handle check, panic boundary). The Rust side of the comparison (the same getters
 * called in Rust, and event delivery latency into a C callback) is
 * `cargo run -p tenure-ffi --release --example ffi_bench`.
 *
 * Built by tests/c/run.sh as target/c/bin/bench; run it by hand:
 *   target/c/bin/bench [iterations]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tenure.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define TRY(call)                                                               \
    do {                                                                        \
        tenure_status st_ = (call);                                             \
        if (st_ != TENURE_STATUS_OK) {                                          \
            fprintf(stderr, "%s: %s\n", #call, tenure_status_str(st_));         \
            return 1;                                                           \
        }                                                                       \
    } while (0)

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000L;
    tenure_server_builder *sb;
    tenure_server *server;
    tenure_client_builder *cb;
    tenure_client *client;
    tenure_lock *lock;
    tenure_callback none = {NULL, NULL, NULL};
    char addr[64];
    size_t n;
    long i;
    int round;
    volatile uint64_t sink = 0;
    volatile int bsink = 0;

    TRY(tenure_server_builder_new(&sb));
    TRY(tenure_server_builder_set_listen(sb, "127.0.0.1:0"));
    TRY(tenure_server_builder_set_durability(sb, TENURE_DURABILITY_NONE));
    TRY(tenure_server_start(sb, &server));
    TRY(tenure_server_address(server, addr, sizeof addr, &n));
    TRY(tenure_client_builder_new(&cb));
    TRY(tenure_client_builder_add_endpoint(cb, addr));
    TRY(tenure_client_connect(cb, &client));
    TRY(tenure_client_lock(client, "bench", 5000, none, &lock));

    for (round = 0; round < 3; round++) {
        double t0 = now_ns(), t1, t2, t3;
        for (i = 0; i < iters; i++) sink += tenure_lock_fencing_token(lock);
        t1 = now_ns();
        for (i = 0; i < iters / 10; i++) bsink += tenure_lock_is_held(lock);
        t2 = now_ns();
        for (i = 0; i < iters / 10; i++) bsink += tenure_client_is_connected(client);
        t3 = now_ns();
        printf("round %d: tenure_lock_fencing_token %.2f ns/call, tenure_lock_is_held %.2f ns/call, "
               "tenure_client_is_connected %.2f ns/call\n",
               round, (t1 - t0) / (double)iters, (t2 - t1) / (double)(iters / 10),
               (t3 - t2) / (double)(iters / 10));
    }
    (void)sink;
    (void)bsink;
    tenure_lock_free(lock);
    tenure_client_free(client);
    tenure_server_free(server);
    return 0;
}
