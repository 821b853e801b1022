/*
 * tenure from C: start an embedded server, take a lock and react to its loss, run an
 * election and react to master changes. The README quotes this file; CI builds and runs it
 * (tests/c/run.sh).
 *
 *   cc -std=c99 example.c $(pkg-config --cflags --libs tenure) -o example   (after install-c.sh)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>

#include "tenure.h"

/* Prints the failed call with tenure's message and leaves main. */
#define TRY(call)                                                                   \
    do {                                                                            \
        tenure_status st_ = (call);                                                 \
        if (st_ != TENURE_STATUS_OK) {                                              \
            char msg_[256];                                                         \
            size_t n_;                                                              \
            if (tenure_last_error(msg_, sizeof msg_, &n_) != TENURE_STATUS_OK) {    \
                msg_[0] = 0;                                                        \
            }                                                                       \
            fprintf(stderr, "%s: %s (%s)\n", #call, tenure_status_str(st_), msg_); \
            return 1;                                                               \
        }                                                                           \
    } while (0)

/* Called on a tenure thread when the lock is lost (never when it is released). */
static void on_lock_lost(void *user_data, const tenure_event *event) {
    const char *name = NULL;
    tenure_lost_reason reason = TENURE_LOST_REASON_NONE;
    (void)user_data;
    tenure_event_lock_name(event, &name);
    tenure_event_reason(event, &reason);
    /* Stop writing to what the lock protects: another process may hold it soon. */
    printf("lost lock %s: %s\n", name, tenure_lost_reason_str(reason));
}

/* Called on a tenure thread with every master change, first with the current master. */
static void on_master_change(void *user_data, const tenure_event *event) {
    const char *master = NULL, *election = NULL;
    uint64_t epoch = 0;
    (void)user_data;
    tenure_event_election(event, &election);
    tenure_event_master_id(event, &master);
    tenure_event_epoch(event, &epoch);
    printf("%s: master is %s (epoch %llu)\n", election, master ? master : "(none)",
           (unsigned long long)epoch);
}

int main(void) {
    tenure_server_builder *sb;
    tenure_server *server;
    tenure_client_builder *cb;
    tenure_client *client;
    tenure_lock *lock;
    tenure_election *election;
    tenure_callback lost_cb = {on_lock_lost, NULL, NULL};
    tenure_callback master_cb = {on_master_change, NULL, NULL};
    char addr[64];
    size_t n;
    uint64_t epoch;
    struct timespec pause = {0, 200 * 1000 * 1000};

    /* An embedded server on a free loopback port (no durability: this is a demo). */
    TRY(tenure_server_builder_new(&sb));
    TRY(tenure_server_builder_set_listen(sb, "127.0.0.1:0"));
    TRY(tenure_server_builder_set_durability(sb, TENURE_DURABILITY_NONE));
    TRY(tenure_server_start(sb, &server)); /* consumes sb */
    TRY(tenure_server_address(server, addr, sizeof addr, &n));

    /* A client with a 2 s session, kept alive by heartbeats on a library thread. */
    TRY(tenure_client_builder_new(&cb));
    TRY(tenure_client_builder_add_endpoint(cb, addr));
    TRY(tenure_client_builder_set_session_ttl_ms(cb, 2000));
    TRY(tenure_client_connect(cb, &client)); /* consumes cb */

    /* A lock, with a callback for its loss and a fencing token for what it protects. */
    TRY(tenure_client_lock(client, "jobs/reindex", 5000, lost_cb, &lock));
    printf("holding jobs/reindex with fencing token %llu\n",
           (unsigned long long)tenure_lock_fencing_token(lock));
    /* An administrator takes it away (tenure_client_revoke): the lost callback runs, and
     * tenure_lock_is_held turns false. Without that, tenure_lock_release gives it back. */
    TRY(tenure_client_revoke(client, "jobs/reindex"));
    nanosleep(&pause, NULL);
    printf("still held: %s\n", tenure_lock_is_held(lock) ? "yes" : "no");
    tenure_lock_free(lock);

    /* An election: this process is a candidate with priority 10. */
    TRY(tenure_client_campaign(client, "service/leader", "node-1", 10, NULL, master_cb,
                               &election));
    nanosleep(&pause, NULL); /* let the callback print */
    if (tenure_election_master_epoch(election, &epoch) == TENURE_STATUS_OK) {
        printf("node-1 is master; use epoch %llu to fence its writes\n", (unsigned long long)epoch);
    }
    TRY(tenure_election_resign(election));
    tenure_election_free(election);

    tenure_client_free(client);
    tenure_server_free(server);
    return 0;
}
