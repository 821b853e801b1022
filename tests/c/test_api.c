/*
 * Tests of the C API of tenure (include/tenure.h) against an embedded server started through
 * the same API. Built as C99 and as C++, linked against libtenure.so and libtenure.a, and run
 * under AddressSanitizer + UndefinedBehaviorSanitizer by tests/c/run.sh.
 *
 * Usage: test_api [name-filter]
 */
#define _POSIX_C_SOURCE 200809L

#include "harness.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

/* ---- a recording callback ------------------------------------------------------------- */

#define MAX_SEEN 64

typedef struct recorder {
    pthread_mutex_t mu;
    int calls;
    int drops;
    int call_after_drop;
    int kinds[MAX_SEEN];
    char text[MAX_SEEN][64]; /* lock name or master id ("" for none) */
    uint64_t num[MAX_SEEN];  /* fencing token, epoch or view */
    int reason[MAX_SEEN];
    double at_ms[MAX_SEEN];
    int wrong_type_checked; /* a getter of another kind answered WRONG_EVENT_TYPE */
    int block_first_ms;     /* the first call sleeps this long */
} recorder;

static void rec_init(recorder *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static void rec_destroy(recorder *r) {
    pthread_mutex_destroy(&r->mu);
}

static void rec_call(void *ud, const tenure_event *ev) {
    recorder *r = (recorder *)ud;
    const char *s = NULL;
    uint64_t n = 0;
    tenure_lost_reason reason = TENURE_LOST_REASON_NONE;
    tenure_event_type kind = tenure_event_kind(ev);
    int block = 0, i;
    if (kind == TENURE_EVENT_TYPE_LOCK_LOST || kind == TENURE_EVENT_TYPE_LOCK_ACQUIRED) {
        (void)tenure_event_lock_name(ev, &s);
        (void)tenure_event_fencing_token(ev, &n);
        if (kind == TENURE_EVENT_TYPE_LOCK_LOST) (void)tenure_event_reason(ev, &reason);
    } else if (kind == TENURE_EVENT_TYPE_MASTER_CHANGED) {
        (void)tenure_event_master_id(ev, &s);
        (void)tenure_event_epoch(ev, &n);
    } else if (kind == TENURE_EVENT_TYPE_VIEW_CHANGED) {
        (void)tenure_event_view(ev, &n);
    } else if (kind == TENURE_EVENT_TYPE_MEMBER_PROMOTED || kind == TENURE_EVENT_TYPE_MEMBER_REMOVED) {
        (void)tenure_event_member(ev, &s);
    }
    pthread_mutex_lock(&r->mu);
    if (r->drops > 0) r->call_after_drop++;
    i = r->calls++;
    if (i < MAX_SEEN) {
        r->kinds[i] = (int)kind;
        snprintf(r->text[i], sizeof r->text[i], "%s", s ? s : "");
        r->num[i] = n;
        r->reason[i] = (int)reason;
        r->at_ms[i] = now_ms();
    }
    if (kind == TENURE_EVENT_TYPE_MASTER_CHANGED) {
        const char *lock_name = NULL;
        uint64_t token = 0;
        if (tenure_event_lock_name(ev, &lock_name) == TENURE_STATUS_WRONG_EVENT_TYPE &&
            tenure_event_fencing_token(ev, &token) == TENURE_STATUS_WRONG_EVENT_TYPE &&
            lock_name == NULL && token == 0) {
            r->wrong_type_checked++;
        }
    }
    if (i == 0) block = r->block_first_ms;
    pthread_mutex_unlock(&r->mu);
    if (block > 0) sleep_ms(block);
}

static void rec_drop(void *ud) {
    recorder *r = (recorder *)ud;
    pthread_mutex_lock(&r->mu);
    r->drops++;
    pthread_mutex_unlock(&r->mu);
}

static tenure_callback rec_cb(recorder *r) {
    return make_cb(rec_call, rec_drop, r);
}

static int rec_calls(recorder *r) {
    int v;
    pthread_mutex_lock(&r->mu);
    v = r->calls;
    pthread_mutex_unlock(&r->mu);
    return v;
}

static int rec_drops(recorder *r) {
    int v;
    pthread_mutex_lock(&r->mu);
    v = r->drops;
    pthread_mutex_unlock(&r->mu);
    return v;
}

/* Waits until the last master_changed event names `id` ("" for none); writes its epoch. */
static int rec_wait_master(recorder *r, const char *id, uint64_t *epoch, int limit_ms) {
    double end = now_ms() + limit_ms;
    for (;;) {
        int i, found = 0;
        pthread_mutex_lock(&r->mu);
        for (i = (r->calls < MAX_SEEN ? r->calls : MAX_SEEN) - 1; i >= 0; i--) {
            if (r->kinds[i] == TENURE_EVENT_TYPE_MASTER_CHANGED) {
                if (strcmp(r->text[i], id) == 0) {
                    found = 1;
                    if (epoch) *epoch = r->num[i];
                }
                break;
            }
        }
        pthread_mutex_unlock(&r->mu);
        if (found) return 1;
        if (now_ms() > end) return 0;
        sleep_ms(2);
    }
}

static int wait_drops(recorder *r, int n, int limit_ms) {
    double end = now_ms() + limit_ms;
    while (rec_drops(r) < n) {
        if (now_ms() > end) return 0;
        sleep_ms(2);
    }
    return 1;
}

static int wait_calls(recorder *r, int n, int limit_ms) {
    double end = now_ms() + limit_ms;
    while (rec_calls(r) < n) {
        if (now_ms() > end) return 0;
        sleep_ms(2);
    }
    return 1;
}

/* ---- tests without a server ------------------------------------------------------------ */

static int test_version(void) {
    CHECK(tenure_version_number() == (uint32_t)TENURE_VERSION);
    CHECK(strcmp(tenure_version(), TENURE_VERSION_STRING) == 0);
    CHECK(TENURE_VERSION == ((TENURE_VERSION_MAJOR << 16) | (TENURE_VERSION_MINOR << 8) |
                             TENURE_VERSION_PATCH));
    return 0;
}

static int test_limits_are_the_cores(void) {
    uint64_t v = 7;
    CHECK_OK(tenure_limit("name_bytes", &v));
    CHECK(v == 1024);
    CHECK_OK(tenure_limit("waiters_per_lock", &v));
    CHECK(v == 10000);
    v = 7;
    CHECK_ST(tenure_limit("no_such_limit", &v), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK(v == 7); /* written only on success */
    CHECK_ST(tenure_limit(NULL, &v), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_limit("name_bytes", NULL), TENURE_STATUS_NULL_ARGUMENT);
    return 0;
}

static int test_status_strings_and_last_error(void) {
    char buf[256];
    size_t n = 12345;
    tenure_server_builder *b = NULL;
    CHECK(strcmp(tenure_status_str(TENURE_STATUS_OK), "ok") == 0);
    CHECK(strcmp(tenure_status_str(TENURE_STATUS_TIMEOUT), "timed out") == 0);
    CHECK(strcmp(tenure_status_str(77777), "unknown status") == 0);
    CHECK(TENURE_STATUS_NULL_ARGUMENT == 100 && TENURE_STATUS_CONNECTION_FAILED == 200 &&
          TENURE_STATUS_LOCK_HELD == 300 && TENURE_STATUS_ALREADY_HELD == 302 &&
          TENURE_STATUS_NOT_MASTER == 400 &&
          TENURE_STATUS_IO == 500 && TENURE_STATUS_PANIC == 900);
    /* A failure records a message... */
    CHECK_ST(tenure_server_builder_new(NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_OK(tenure_last_error(buf, sizeof buf, &n));
    CHECK(n > 0 && strlen(buf) == n && strstr(buf, "builder_out") != NULL);
    /* ...that a too small buffer does not receive, but whose length is reported. */
    {
        char small[4] = {'x', 'x', 'x', 'x'};
        size_t need = 0;
        CHECK_ST(tenure_last_error(small, sizeof small, &need), TENURE_STATUS_BUFFER_TOO_SMALL);
        CHECK(need == n && small[0] == 'x');
        CHECK_ST(tenure_last_error(NULL, 0, &need), TENURE_STATUS_BUFFER_TOO_SMALL);
        CHECK(need == n);
        CHECK_ST(tenure_last_error(NULL, 10, &need), TENURE_STATUS_NULL_ARGUMENT);
        CHECK_ST(tenure_last_error(buf, sizeof buf, NULL), TENURE_STATUS_NULL_ARGUMENT);
    }
    /* A success leaves the message as it was. */
    CHECK_OK(tenure_server_builder_new(&b));
    tenure_server_builder_free(b);
    CHECK_OK(tenure_last_error(buf, sizeof buf, &n));
    CHECK(strstr(buf, "builder_out") != NULL);
    CHECK(strcmp(tenure_lost_reason_str(TENURE_LOST_REASON_SESSION_EXPIRED), "session_expired") == 0);
    CHECK(strcmp(tenure_lost_reason_str(TENURE_LOST_REASON_RELEASED), "released") == 0);
    CHECK(strcmp(tenure_lost_reason_str(TENURE_LOST_REASON_CLIENT_CLOSED), "client_closed") == 0);
    CHECK(strcmp(tenure_lost_reason_str(999), "unknown") == 0);
    CHECK(strcmp(tenure_event_type_str(TENURE_EVENT_TYPE_MASTER_CHANGED), "master_changed") == 0);
    CHECK(strcmp(tenure_event_type_str(12345), "unknown") == 0);
    return 0;
}

static int test_null_arguments_are_errors(void) {
    tenure_server_builder *sb = NULL;
    tenure_client_builder *cb = NULL;
    tenure_client *c = NULL;
    tenure_lock *l = NULL;
    tenure_subscription *s = NULL;
    tenure_election *e = NULL;
    size_t n = 0;
    uint64_t u = 0;
    recorder r;
    rec_init(&r);
    CHECK_ST(tenure_server_builder_new(NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_server_builder_set_listen(NULL, "127.0.0.1:0"), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_OK(tenure_server_builder_new(&sb));
    CHECK_ST(tenure_server_builder_set_listen(sb, NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_server_builder_set_data_dir(sb, NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_server_builder_set_durability(sb, 42), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_server_start(sb, NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_server_start(NULL, NULL), TENURE_STATUS_NULL_ARGUMENT);
    /* server_out NULL was detected before the builder was consumed: */
    CHECK_OK(tenure_server_builder_set_listen(sb, "127.0.0.1:0"));
    tenure_server_builder_free(sb);
    CHECK_ST(tenure_server_address(NULL, NULL, 0, &n), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_client_builder_new(NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_OK(tenure_client_builder_new(&cb));
    CHECK_ST(tenure_client_builder_add_endpoint(cb, NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_client_builder_add_endpoint(NULL, "x:1"), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_client_builder_set_session_ttl_ms(cb, 0), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_builder_set_session_ttl_ms(cb, UINT64_MAX), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_connect(cb, NULL), TENURE_STATUS_NULL_ARGUMENT);
    /* No endpoint: consumed, and refused. */
    CHECK_ST(tenure_client_connect(cb, &c), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK(c == NULL);
    CHECK_ST(tenure_client_builder_add_endpoint(cb, "x:1"), TENURE_STATUS_INVALID_HANDLE);
    CHECK_ST(tenure_client_lock(NULL, "a", 10, no_cb(), &l), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_client_try_lock(NULL, "a", no_cb(), &l), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_client_subscribe(NULL, rec_cb(&r), &s), TENURE_STATUS_NULL_ARGUMENT);
    CHECK(rec_drops(&r) == 1); /* a callback passed to a failing call is dropped at once */
    CHECK_ST(tenure_client_campaign(NULL, "e", "id", 1, NULL, no_cb(), &e), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_client_observe(NULL, "e", rec_cb(&r), &s), TENURE_STATUS_NULL_ARGUMENT);
    CHECK(rec_drops(&r) == 2 && rec_calls(&r) == 0);
    CHECK(tenure_lock_fencing_token(NULL) == 0);
    CHECK(!tenure_lock_is_held(NULL));
    CHECK_ST(tenure_lock_release(NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK(!tenure_election_is_master(NULL));
    CHECK_ST(tenure_election_master_epoch(NULL, &u), TENURE_STATUS_NULL_ARGUMENT);
    CHECK(!tenure_client_is_connected(NULL));
    CHECK(tenure_event_kind(NULL) == TENURE_EVENT_TYPE_UNKNOWN);
    CHECK(strcmp(tenure_event_name(NULL), "") == 0);
    CHECK_ST(tenure_event_epoch(NULL, &u), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_ST(tenure_candidacy_builder_new(NULL, NULL), TENURE_STATUS_NULL_ARGUMENT);
    /* _free(NULL) is a no-op. */
    tenure_server_builder_free(NULL);
    tenure_server_free(NULL);
    tenure_client_builder_free(NULL);
    tenure_client_free(NULL);
    tenure_subscription_free(NULL);
    tenure_lock_free(NULL);
    tenure_election_free(NULL);
    tenure_membership_free(NULL);
    tenure_candidacy_builder_free(NULL);
    tenure_service_status_free(NULL);
    rec_destroy(&r);
    return 0;
}

static int test_invalid_utf8_is_an_error(void) {
    static const char bad[] = {(char)0xff, (char)0xfe, 'a', 0};
    tenure_server_builder *sb = NULL;
    tenure_client_builder *cb = NULL;
    tenure_candidacy_builder *cand = NULL;
    CHECK_OK(tenure_server_builder_new(&sb));
    CHECK_ST(tenure_server_builder_set_listen(sb, bad), TENURE_STATUS_INVALID_UTF8);
    CHECK_ST(tenure_server_builder_set_data_dir(sb, bad), TENURE_STATUS_INVALID_UTF8);
    tenure_server_builder_free(sb);
    CHECK_OK(tenure_client_builder_new(&cb));
    CHECK_ST(tenure_client_builder_add_endpoint(cb, bad), TENURE_STATUS_INVALID_UTF8);
    CHECK_ST(tenure_client_builder_set_client_name(cb, bad), TENURE_STATUS_INVALID_UTF8);
    tenure_client_builder_free(cb);
    CHECK_ST(tenure_candidacy_builder_new(bad, &cand), TENURE_STATUS_INVALID_UTF8);
    CHECK(cand == NULL);
    return 0;
}

static int test_double_free_and_consumed_builders(void) {
    tenure_server_builder *sb = NULL;
    tenure_server *srv = NULL, *srv2 = NULL;
    tenure_client_builder *cb = NULL;
    tenure_client *c = NULL;
    tenure_lock *l = NULL;
    char addr[64];
    size_t n = 0;
    /* A builder used after it was consumed by a successful start. */
    CHECK_OK(tenure_server_builder_new(&sb));
    CHECK_OK(tenure_server_builder_set_listen(sb, "127.0.0.1:0"));
    CHECK_OK(tenure_server_builder_set_durability(sb, TENURE_DURABILITY_NONE));
    CHECK_OK(tenure_server_start(sb, &srv));
    CHECK_ST(tenure_server_builder_set_listen(sb, "127.0.0.1:0"), TENURE_STATUS_INVALID_HANDLE);
    CHECK_ST(tenure_server_start(sb, &srv2), TENURE_STATUS_INVALID_HANDLE);
    CHECK(srv2 == NULL);
    tenure_server_builder_free(sb); /* consumed: ignored */
    CHECK_OK(tenure_server_address(srv, addr, sizeof addr, &n));
    /* A builder used after it was freed, then freed again. */
    CHECK_OK(tenure_client_builder_new(&cb));
    tenure_client_builder_free(cb);
    tenure_client_builder_free(cb);
    CHECK_ST(tenure_client_builder_add_endpoint(cb, addr), TENURE_STATUS_INVALID_HANDLE);
    CHECK_ST(tenure_client_connect(cb, &c), TENURE_STATUS_INVALID_HANDLE);
    /* Live objects freed twice; handles of the wrong type; handles never returned. */
    CHECK_OK(connect_client(addr, 5000, &c));
    CHECK_OK(tenure_client_lock(c, "double-free", 1000, no_cb(), &l));
    CHECK(tenure_lock_fencing_token(l) > 0);
    CHECK(!tenure_lock_is_held((const tenure_lock *)c)); /* a client is not a lock */
    CHECK_ST(tenure_lock_release((tenure_lock *)c), TENURE_STATUS_INVALID_HANDLE);
    CHECK_ST(tenure_client_close((tenure_client *)l), TENURE_STATUS_INVALID_HANDLE);
    CHECK_ST(tenure_client_close((tenure_client *)(uintptr_t)0x1234), TENURE_STATUS_INVALID_HANDLE);
    tenure_lock_free(l);
    tenure_lock_free(l);
    CHECK(tenure_lock_fencing_token(l) == 0);
    CHECK(!tenure_lock_is_held(l));
    CHECK_ST(tenure_lock_release(l), TENURE_STATUS_INVALID_HANDLE);
    tenure_client_free(c);
    tenure_client_free(c);
    CHECK_ST(tenure_client_lock(c, "double-free", 10, no_cb(), &l), TENURE_STATUS_INVALID_HANDLE);
    tenure_server_free(srv);
    tenure_server_free(srv);
    CHECK_ST(tenure_server_address(srv, addr, sizeof addr, &n), TENURE_STATUS_INVALID_HANDLE);
    return 0;
}

/* ---- locks ------------------------------------------------------------------------------ */

static int test_lock_contention_between_two_clients(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL, *b = NULL;
    tenure_lock *la = NULL, *lb = NULL, *none = NULL;
    char addr[64], name[8];
    size_t n = 0;
    uint64_t ta, tb;
    double t0;
    tenure_lost_reason reason = TENURE_LOST_REASON_SESSION_EXPIRED;
    recorder lost;
    rec_init(&lost);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(connect_client(addr, 5000, &a));
    CHECK_OK(connect_client(addr, 5000, &b));
    CHECK_OK(tenure_client_lock(a, "jobs/reindex", 2000, rec_cb(&lost), &la));
    ta = tenure_lock_fencing_token(la);
    CHECK(ta > 0 && tenure_lock_is_held(la));
    /* Asking again for a lock this client holds is its own status, not a wait. */
    CHECK_ST(tenure_client_try_lock(a, "jobs/reindex", no_cb(), &none), TENURE_STATUS_ALREADY_HELD);
    CHECK(none == NULL);
    CHECK_ST(tenure_client_lock(a, "jobs/reindex", 200, no_cb(), &none), TENURE_STATUS_ALREADY_HELD);
    CHECK(none == NULL && tenure_lock_is_held(la));
    CHECK_ST(tenure_client_try_lock(b, "jobs/reindex", no_cb(), &none), TENURE_STATUS_LOCK_HELD);
    CHECK(none == NULL);
    t0 = now_ms();
    CHECK_ST(tenure_client_lock(b, "jobs/reindex", 200, no_cb(), &none), TENURE_STATUS_TIMEOUT);
    CHECK(none == NULL && now_ms() - t0 >= 190 && now_ms() - t0 < 3000);
    CHECK_ST(tenure_lock_name(la, name, sizeof name, &n), TENURE_STATUS_BUFFER_TOO_SMALL);
    CHECK(n == strlen("jobs/reindex"));
    {
        char full[32];
        CHECK_OK(tenure_lock_name(la, full, sizeof full, &n));
        CHECK(strcmp(full, "jobs/reindex") == 0 && n == strlen(full));
    }
    CHECK_OK(tenure_lock_lost_reason(la, &reason));
    CHECK(reason == TENURE_LOST_REASON_NONE);
    CHECK_OK(tenure_lock_release(la));
    CHECK(!tenure_lock_is_held(la));
    CHECK(tenure_lock_fencing_token(la) == ta); /* still readable */
    CHECK_ST(tenure_lock_release(la), TENURE_STATUS_NOT_HELD);
    CHECK(rec_drops(&lost) == 1 && rec_calls(&lost) == 0); /* a release is not a loss */
    CHECK_OK(tenure_client_lock(b, "jobs/reindex", 2000, no_cb(), &lb));
    tb = tenure_lock_fencing_token(lb);
    CHECK(tb > ta && tenure_lock_is_held(lb));
    tenure_lock_free(la);
    tenure_lock_free(lb);
    tenure_client_free(a);
    tenure_client_free(b);
    tenure_server_free(srv);
    rec_destroy(&lost);
    return 0;
}

typedef struct waiter {
    tenure_client *client;
    tenure_lock *watched; /* the holder's lock, checked at the grant */
    tenure_lock *lock;
    tenure_status st;
    double granted_ms;
    int watched_held_at_grant;
    counter done;
} waiter;

static void *wait_for_lock(void *arg) {
    waiter *w = (waiter *)arg;
    w->st = tenure_client_lock(w->client, "fenced", 15000, no_cb(), &w->lock);
    w->granted_ms = now_ms();
    w->watched_held_at_grant = tenure_lock_is_held(w->watched);
    counter_add(&w->done, 1);
    return NULL;
}

/* The holder is cut off from the server (its heartbeats are dropped): its session expires.
 * Its lost callback must come before the waiting client is granted the lock, and is_held
 * must be false by then. */
static int test_lost_callback_before_the_next_grant(void) {
    tenure_server *srv = NULL;
    tenure_client *holder = NULL, *other = NULL;
    tenure_lock *held = NULL;
    char addr[64], via[64];
    proxy p;
    pthread_t t;
    waiter w;
    recorder lost;
    double cut;
    rec_init(&lost);
    memset(&w, 0, sizeof w);
    counter_init(&w.done);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK(proxy_start(&p, port_of(addr)) == 0);
    snprintf(via, sizeof via, "127.0.0.1:%d", p.port);
    {
        /* The holder's deadline comes 1% of the TTL (drift allowance) plus its safety margin
         * before the server's expiry. The lost callback runs on a dispatcher thread, whose
         * scheduling a loaded CI machine can delay by milliseconds, so the holder takes a
         * 100 ms margin, as a real deployment would. (is_held is checked without it.) */
        tenure_client_builder *hb = NULL;
        CHECK_OK(tenure_client_builder_new(&hb));
        CHECK_OK(tenure_client_builder_add_endpoint(hb, via));
        CHECK_OK(tenure_client_builder_set_session_ttl_ms(hb, 1000));
        CHECK_OK(tenure_client_builder_set_safety_margin_ms(hb, 100));
        CHECK_OK(tenure_client_connect(hb, &holder));
    }
    CHECK_OK(connect_client(addr, 10000, &other));
    CHECK_OK(tenure_client_lock(holder, "fenced", 2000, rec_cb(&lost), &held));
    w.client = other;
    w.watched = held;
    CHECK(pthread_create(&t, NULL, wait_for_lock, &w) == 0);
    sleep_ms(150); /* the other client is now queued */
    CHECK(counter_get(&w.done) == 0);
    cut = now_ms();
    proxy_set_blackhole(&p, 1);
    if (!wait_count(&w.done, 1, 10000)) {
        snprintf(g_fail_what, sizeof g_fail_what, "the waiter was not granted within 10 s");
        g_fail_where = __FILE__;
        pthread_join(t, NULL); /* bounded by its own 15 s timeout */
        return 1;
    }
    pthread_join(t, NULL);
    CHECK_OK(w.st);
    CHECK(wait_calls(&lost, 1, 2000));
    pthread_mutex_lock(&lost.mu);
    {
        double lost_at = lost.at_ms[0];
        int kind = lost.kinds[0], reason = lost.reason[0];
        int same_name = strcmp(lost.text[0], "fenced") == 0;
        uint64_t token = lost.num[0];
        pthread_mutex_unlock(&lost.mu);
        printf("     cut at 0 ms, lost callback at %.1f ms, next grant at %.1f ms\n",
               lost_at - cut, w.granted_ms - cut);
        CHECK(kind == TENURE_EVENT_TYPE_LOCK_LOST && same_name);
        CHECK(reason == TENURE_LOST_REASON_SESSION_EXPIRED);
        CHECK(token == tenure_lock_fencing_token(held));
        CHECK(lost_at < w.granted_ms);
    }
    CHECK(!w.watched_held_at_grant);
    CHECK(!tenure_lock_is_held(held));
    CHECK(tenure_lock_fencing_token(w.lock) > tenure_lock_fencing_token(held));
    proxy_set_blackhole(&p, 0);
    tenure_lock_free(held);
    CHECK(rec_calls(&lost) == 1 && rec_drops(&lost) == 1 && lost.call_after_drop == 0);
    tenure_lock_free(w.lock);
    tenure_client_free(holder);
    tenure_client_free(other);
    proxy_stop(&p);
    tenure_server_free(srv);
    rec_destroy(&lost);
    return 0;
}

static int test_revoke_reports_the_lock_lost_as_released(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL, *admin = NULL;
    tenure_lock *l = NULL;
    char addr[64];
    tenure_lost_reason reason = TENURE_LOST_REASON_NONE;
    recorder lost;
    rec_init(&lost);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(connect_client(addr, 5000, &a));
    CHECK_OK(connect_client(addr, 5000, &admin));
    CHECK_OK(tenure_client_lock(a, "revoked", 2000, rec_cb(&lost), &l));
    CHECK_OK(tenure_client_revoke(admin, "revoked"));
    CHECK(wait_calls(&lost, 1, 5000));
    CHECK(lost.reason[0] == TENURE_LOST_REASON_RELEASED);
    CHECK(!tenure_lock_is_held(l));
    CHECK_OK(tenure_lock_lost_reason(l, &reason));
    CHECK(reason == TENURE_LOST_REASON_RELEASED);
    CHECK_ST(tenure_lock_release(l), TENURE_STATUS_NOT_HELD);
    tenure_lock_free(l);
    CHECK(rec_drops(&lost) == 1);
    tenure_client_free(a);
    tenure_client_free(admin);
    tenure_server_free(srv);
    rec_destroy(&lost);
    return 0;
}

/* A callback given to the builder sees the first connected event; it is dropped exactly once
 * whether it is replaced, refused, carried by the client, or left in an unused builder. */
static int test_on_event_from_the_builder_sees_the_first_connected(void) {
    tenure_server *srv = NULL;
    tenure_client_builder *b = NULL, *unused_b = NULL;
    tenure_client *c = NULL;
    char addr[64];
    int first = -1;
    recorder r, replaced, refused, unused;
    rec_init(&r);
    rec_init(&replaced);
    rec_init(&refused);
    rec_init(&unused);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(tenure_client_builder_new(&b));
    CHECK_OK(tenure_client_builder_add_endpoint(b, addr));
    CHECK_OK(tenure_client_builder_set_on_event(b, rec_cb(&replaced)));
    CHECK(rec_drops(&replaced) == 0);
    CHECK_OK(tenure_client_builder_set_on_event(b, rec_cb(&r)));
    CHECK(rec_drops(&replaced) == 1 && rec_calls(&replaced) == 0);
    /* No `call`: refused, its drop runs, and the callback set before stays. */
    CHECK_ST(tenure_client_builder_set_on_event(b, make_cb(NULL, rec_drop, &refused)),
             TENURE_STATUS_NULL_ARGUMENT);
    CHECK(rec_drops(&refused) == 1);
    CHECK_ST(tenure_client_builder_set_on_event(NULL, rec_cb(&unused)), TENURE_STATUS_NULL_ARGUMENT);
    CHECK(rec_drops(&unused) == 1);
    CHECK_OK(tenure_client_connect(b, &c));
    CHECK(wait_calls(&r, 1, 5000));
    pthread_mutex_lock(&r.mu);
    first = r.kinds[0];
    pthread_mutex_unlock(&r.mu);
    CHECK(first == TENURE_EVENT_TYPE_CONNECTED);
    CHECK(rec_drops(&r) == 0);
    tenure_client_free(c);
    CHECK(wait_drops(&r, 1, 5000));
    /* A builder freed unconsumed drops its callback. */
    CHECK_OK(tenure_client_builder_new(&unused_b));
    CHECK_OK(tenure_client_builder_set_on_event(unused_b, rec_cb(&unused)));
    tenure_client_builder_free(unused_b);
    CHECK(rec_drops(&unused) == 2 && rec_calls(&unused) == 0);
    sleep_ms(50);
    CHECK(rec_drops(&r) == 1 && rec_drops(&replaced) == 1 && rec_drops(&refused) == 1);
    tenure_server_free(srv);
    rec_destroy(&r);
    rec_destroy(&replaced);
    rec_destroy(&refused);
    rec_destroy(&unused);
    return 0;
}

/* ---- elections ----------------------------------------------------------------------- */

static int test_master_change_callbacks_on_candidates_and_an_observer(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL, *b = NULL, *o = NULL;
    tenure_election *ea = NULL, *eb = NULL;
    tenure_subscription *obs = NULL;
    tenure_candidacy_builder *cand = NULL;
    char addr[64], id[32];
    size_t n = 0;
    uint64_t e1 = 0, e2 = 0, epoch = 0, x = 0;
    recorder ra, rb, ro;
    rec_init(&ra);
    rec_init(&rb);
    rec_init(&ro);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(connect_client(addr, 5000, &a));
    CHECK_OK(connect_client(addr, 5000, &b));
    CHECK_OK(connect_client(addr, 5000, &o));
    CHECK_OK(tenure_client_campaign(a, "leader", "a", 10, NULL, rec_cb(&ra), &ea));
    CHECK_OK(tenure_candidacy_builder_new("b", &cand));
    CHECK_OK(tenure_candidacy_builder_set_priority(cand, 5));
    CHECK_OK(tenure_candidacy_builder_set_endpoint(cand, NULL));
    CHECK_OK(tenure_client_campaign_with(b, "leader", cand, rec_cb(&rb), &eb));
    CHECK_ST(tenure_candidacy_builder_set_priority(cand, 1), TENURE_STATUS_INVALID_HANDLE);
    CHECK_OK(tenure_client_observe(o, "leader", rec_cb(&ro), &obs));
    CHECK(rec_wait_master(&ra, "a", &e1, 5000));
    CHECK(rec_wait_master(&rb, "a", NULL, 5000));
    CHECK(rec_wait_master(&ro, "a", NULL, 5000));
    CHECK(tenure_election_is_master(ea) && !tenure_election_is_master(eb));
    CHECK_OK(tenure_election_master_epoch(ea, &epoch));
    CHECK(epoch == e1);
    CHECK_ST(tenure_election_master_epoch(eb, &x), TENURE_STATUS_NOT_MASTER);
    CHECK_OK(tenure_election_master(eb, id, sizeof id, &n, &x));
    CHECK(strcmp(id, "a") == 0 && n == 1 && x == e1);
    CHECK_OK(tenure_subscription_master(obs, id, sizeof id, &n, &x));
    CHECK(strcmp(id, "a") == 0);
    CHECK_OK(tenure_client_request_election(o, "leader", 2000, id, sizeof id, &n, &x));
    CHECK(strcmp(id, "a") == 0 && x == e1);
    /* The master resigns: everyone hears of the next one, at a later epoch. */
    CHECK_OK(tenure_election_resign(ea));
    CHECK(wait_drops(&ra, 1, 1) == 1); /* resign ended the registration */
    CHECK(rec_wait_master(&rb, "b", &e2, 5000));
    CHECK(rec_wait_master(&ro, "b", NULL, 5000));
    CHECK(e2 > e1);
    CHECK(tenure_election_is_master(eb) && !tenure_election_is_master(ea));
    CHECK_ST(tenure_election_master(ea, id, sizeof id, &n, &x), TENURE_STATUS_NO_MASTER);
    CHECK_OK(tenure_election_resign(ea)); /* twice: no-op */
    /* Getters of other kinds answer WRONG_EVENT_TYPE inside the callback. */
    {
        int checked;
        pthread_mutex_lock(&ro.mu);
        checked = ro.wrong_type_checked;
        pthread_mutex_unlock(&ro.mu);
        CHECK(checked >= 2);
    }
    /* No master at all. */
    CHECK_ST(tenure_client_request_election(o, "nobody", 2000, id, sizeof id, &n, &x),
             TENURE_STATUS_NO_MASTER);
    tenure_election_free(ea);
    tenure_election_free(eb);
    tenure_subscription_free(obs);
    CHECK(rec_drops(&ra) == 1 && rec_drops(&rb) == 1 && rec_drops(&ro) == 1);
    CHECK(ra.call_after_drop == 0 && rb.call_after_drop == 0 && ro.call_after_drop == 0);
    tenure_client_free(a);
    tenure_client_free(b);
    tenure_client_free(o);
    tenure_server_free(srv);
    rec_destroy(&ra);
    rec_destroy(&rb);
    rec_destroy(&ro);
    return 0;
}

/* ---- callback guarantees ---------------------------------------------------------------- */

static int test_drop_runs_exactly_once(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL, *b = NULL;
    tenure_subscription *s = NULL, *w = NULL;
    tenure_lock *l = NULL, *l2 = NULL;
    tenure_election *e = NULL;
    tenure_membership *m = NULL;
    char addr[64];
    recorder r_sub, r_lock, r_busy, r_nocall, r_elect, r_join, r_watch, r_closed;
    rec_init(&r_sub);
    rec_init(&r_lock);
    rec_init(&r_busy);
    rec_init(&r_nocall);
    rec_init(&r_elect);
    rec_init(&r_join);
    rec_init(&r_watch);
    rec_init(&r_closed);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(connect_client(addr, 5000, &a));
    CHECK_OK(connect_client(addr, 5000, &b));
    CHECK_OK(tenure_client_subscribe(a, rec_cb(&r_sub), &s));
    CHECK_OK(tenure_client_lock(a, "drop-once", 2000, rec_cb(&r_lock), &l));
    /* A failing registration drops its callback before returning. */
    CHECK_ST(tenure_client_try_lock(b, "drop-once", rec_cb(&r_busy), &l2), TENURE_STATUS_LOCK_HELD);
    CHECK(rec_drops(&r_busy) == 1);
    /* A callback with no `call` is dropped at once, and the call still succeeds. */
    CHECK_OK(tenure_client_try_lock(b, "drop-once-2", make_cb(NULL, rec_drop, &r_nocall), &l2));
    CHECK(rec_drops(&r_nocall) == 1);
    CHECK_OK(tenure_client_campaign(a, "drop-once", "a", 1, NULL, rec_cb(&r_elect), &e));
    CHECK_OK(tenure_client_join(a, "drop-group", "a", 50, false, rec_cb(&r_join), &m));
    CHECK_OK(tenure_client_watch_group(b, "drop-group", rec_cb(&r_watch), &w));
    CHECK(wait_calls(&r_elect, 1, 5000));
    CHECK(wait_calls(&r_watch, 1, 5000));
    /* Nothing is dropped while the registrations live. */
    CHECK(rec_drops(&r_sub) == 0 && rec_drops(&r_lock) == 0 && rec_drops(&r_elect) == 0 &&
          rec_drops(&r_join) == 0 && rec_drops(&r_watch) == 0);
    tenure_subscription_free(s);
    tenure_lock_free(l);
    tenure_lock_free(l2);
    tenure_election_free(e);
    tenure_membership_free(m);
    tenure_subscription_free(w);
    /* Freed outside the callbacks: each drop has run when free returns, exactly once. */
    CHECK(rec_drops(&r_sub) == 1 && rec_drops(&r_lock) == 1 && rec_drops(&r_elect) == 1 &&
          rec_drops(&r_join) == 1 && rec_drops(&r_watch) == 1);
    /* Double frees do not drop again. */
    tenure_subscription_free(s);
    tenure_lock_free(l);
    tenure_election_free(e);
    /* A client subscription ends when its client is closed. */
    CHECK_OK(tenure_client_subscribe(b, rec_cb(&r_closed), &s));
    CHECK_OK(tenure_client_close(b));
    CHECK(wait_drops(&r_closed, 1, 5000));
    tenure_subscription_free(s);
    sleep_ms(50);
    CHECK(rec_drops(&r_sub) == 1 && rec_drops(&r_lock) == 1 && rec_drops(&r_busy) == 1 &&
          rec_drops(&r_nocall) == 1 && rec_drops(&r_elect) == 1 && rec_drops(&r_join) == 1 &&
          rec_drops(&r_watch) == 1 && rec_drops(&r_closed) == 1);
    CHECK(r_sub.call_after_drop + r_lock.call_after_drop + r_elect.call_after_drop +
              r_join.call_after_drop + r_watch.call_after_drop + r_closed.call_after_drop ==
          0);
    tenure_client_free(a);
    tenure_client_free(b);
    tenure_server_free(srv);
    rec_destroy(&r_sub);
    rec_destroy(&r_lock);
    rec_destroy(&r_busy);
    rec_destroy(&r_nocall);
    rec_destroy(&r_elect);
    rec_destroy(&r_join);
    rec_destroy(&r_watch);
    rec_destroy(&r_closed);
    return 0;
}

/* A callback that frees its own registration. */
typedef struct self_free {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int kind; /* 0: subscription, 1: lock, 2: election */
    void *handle;
    int calls;
    int drops;
    int freed;
    int call_after_drop;
    double free_took_ms;
} self_free;

static void self_free_call(void *ud, const tenure_event *ev) {
    self_free *sf = (self_free *)ud;
    void *h;
    double t0;
    struct timespec until;
    (void)ev;
    pthread_mutex_lock(&sf->mu);
    if (sf->drops > 0) sf->call_after_drop++;
    sf->calls++;
    /* The first call may come before the registering function returned the handle. */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (sf->handle == NULL) {
        if (pthread_cond_timedwait(&sf->cv, &sf->mu, &until) != 0) break;
    }
    h = sf->freed ? NULL : sf->handle;
    sf->freed = 1;
    pthread_mutex_unlock(&sf->mu);
    if (h == NULL) return;
    t0 = now_ms();
    if (sf->kind == 0) tenure_subscription_free((tenure_subscription *)h);
    if (sf->kind == 1) tenure_lock_free((tenure_lock *)h);
    if (sf->kind == 2) tenure_election_free((tenure_election *)h);
    pthread_mutex_lock(&sf->mu);
    sf->free_took_ms = now_ms() - t0;
    pthread_mutex_unlock(&sf->mu);
}

static void self_free_drop(void *ud) {
    self_free *sf = (self_free *)ud;
    pthread_mutex_lock(&sf->mu);
    sf->drops++;
    pthread_mutex_unlock(&sf->mu);
}

static void self_free_init(self_free *sf, int kind) {
    memset(sf, 0, sizeof *sf);
    pthread_mutex_init(&sf->mu, NULL);
    pthread_cond_init(&sf->cv, NULL);
    sf->kind = kind;
}

static void self_free_publish(self_free *sf, void *h) {
    pthread_mutex_lock(&sf->mu);
    sf->handle = h;
    pthread_cond_broadcast(&sf->cv);
    pthread_mutex_unlock(&sf->mu);
}

static int self_free_wait_drop(self_free *sf, int limit_ms) {
    double end = now_ms() + limit_ms;
    for (;;) {
        int d;
        pthread_mutex_lock(&sf->mu);
        d = sf->drops;
        pthread_mutex_unlock(&sf->mu);
        if (d > 0) return 1;
        if (now_ms() > end) return 0;
        sleep_ms(2);
    }
}

static void self_free_destroy(self_free *sf) {
    pthread_cond_destroy(&sf->cv);
    pthread_mutex_destroy(&sf->mu);
}

static int test_freeing_from_inside_its_own_callback_does_not_deadlock(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL, *b = NULL, *admin = NULL;
    tenure_subscription *obs = NULL;
    tenure_lock *l = NULL;
    tenure_election *ea = NULL, *eb = NULL;
    char addr[64];
    self_free s_obs, s_lock, s_elect;
    self_free_init(&s_obs, 0);
    self_free_init(&s_lock, 1);
    self_free_init(&s_elect, 2);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(connect_client(addr, 5000, &a));
    CHECK_OK(connect_client(addr, 5000, &b));
    CHECK_OK(connect_client(addr, 5000, &admin));
    /* An observation freed by its first master_changed call. */
    CHECK_OK(tenure_client_campaign(a, "self-free", "a", 10, NULL, no_cb(), &ea));
    CHECK_OK(tenure_client_observe(b, "self-free", make_cb(self_free_call, self_free_drop, &s_obs), &obs));
    self_free_publish(&s_obs, obs);
    CHECK(self_free_wait_drop(&s_obs, 5000));
    CHECK(s_obs.free_took_ms < 1000);
    /* A lock freed by its lost callback. */
    CHECK_OK(tenure_client_lock(a, "self-free", 2000, make_cb(self_free_call, self_free_drop, &s_lock), &l));
    self_free_publish(&s_lock, l);
    CHECK_OK(tenure_client_revoke(admin, "self-free"));
    CHECK(self_free_wait_drop(&s_lock, 5000));
    /* A candidacy freed by its master_changed callback. */
    CHECK_OK(tenure_client_campaign(b, "self-free", "b", 1, NULL, make_cb(self_free_call, self_free_drop, &s_elect), &eb));
    self_free_publish(&s_elect, eb);
    CHECK(self_free_wait_drop(&s_elect, 5000));
    /* More master changes: none reaches the freed registrations. */
    tenure_election_free(ea);
    sleep_ms(300);
    CHECK(s_obs.calls == 1 && s_lock.calls == 1 && s_elect.calls == 1);
    CHECK(s_obs.drops == 1 && s_lock.drops == 1 && s_elect.drops == 1);
    CHECK(s_obs.call_after_drop + s_lock.call_after_drop + s_elect.call_after_drop == 0);
    /* The handles are gone. */
    CHECK(tenure_lock_fencing_token(l) == 0);
    CHECK(!tenure_election_is_master(eb));
    tenure_subscription_free(obs); /* double free: ignored */
    tenure_client_free(a);
    tenure_client_free(b);
    tenure_client_free(admin);
    tenure_server_free(srv);
    self_free_destroy(&s_obs);
    self_free_destroy(&s_lock);
    self_free_destroy(&s_elect);
    return 0;
}

/* A callback that blocks for 2 s costs neither the session nor a lock nor the mastership: the
 * session TTL is 600 ms, so without independent heartbeats it would expire three times over. */
static int test_a_callback_blocking_2s_does_not_cost_the_session(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL;
    tenure_lock *l = NULL;
    tenure_election *e = NULL;
    tenure_subscription *s = NULL;
    char addr[64];
    uint64_t session0 = 0, session1 = 0;
    tenure_session_state state = TENURE_SESSION_STATE_CLOSED;
    double t0;
    recorder slow, lost, events;
    rec_init(&slow);
    rec_init(&lost);
    rec_init(&events);
    slow.block_first_ms = 2000;
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(connect_client(addr, 600, &a));
    CHECK_OK(tenure_client_session_id(a, &session0));
    CHECK_OK(tenure_client_subscribe(a, rec_cb(&events), &s));
    CHECK_OK(tenure_client_lock(a, "slow", 2000, rec_cb(&lost), &l));
    t0 = now_ms();
    CHECK_OK(tenure_client_campaign(a, "slow", "a", 1, NULL, rec_cb(&slow), &e));
    CHECK(wait_calls(&slow, 1, 5000));
    /* The first call is blocked for 2 s from here. */
    while (now_ms() - t0 < 2300) {
        CHECK(tenure_lock_is_held(l));
        CHECK(tenure_client_is_connected(a));
        sleep_ms(50);
    }
    CHECK_OK(tenure_client_session_id(a, &session1));
    CHECK(session0 != 0 && session0 == session1);
    CHECK_OK(tenure_client_state(a, &state));
    CHECK(state == TENURE_SESSION_STATE_CONNECTED);
    CHECK(tenure_election_is_master(e));
    CHECK(rec_calls(&lost) == 0);
    {
        int i, bad = 0;
        pthread_mutex_lock(&events.mu);
        for (i = 0; i < events.calls && i < MAX_SEEN; i++) {
            if (events.kinds[i] == TENURE_EVENT_TYPE_EXPIRED ||
                events.kinds[i] == TENURE_EVENT_TYPE_LOCK_LOST) {
                bad++;
            }
        }
        pthread_mutex_unlock(&events.mu);
        CHECK(bad == 0);
    }
    tenure_election_free(e);
    tenure_lock_free(l);
    tenure_subscription_free(s);
    tenure_client_free(a);
    tenure_server_free(srv);
    CHECK(rec_drops(&slow) == 1 && rec_drops(&lost) == 1 && rec_drops(&events) == 1);
    rec_destroy(&slow);
    rec_destroy(&lost);
    rec_destroy(&events);
    return 0;
}

/* ---- groups, status, buffers ------------------------------------------------------------ */

typedef struct view_seen {
    pthread_mutex_t mu;
    int promoted;
    uint64_t last_view;
    int last_full;
    int last_count;
    char first_member[32];
} view_seen;

static void view_call(void *ud, const tenure_event *ev) {
    view_seen *v = (view_seen *)ud;
    tenure_event_type k = tenure_event_kind(ev);
    pthread_mutex_lock(&v->mu);
    if (k == TENURE_EVENT_TYPE_MEMBER_PROMOTED) v->promoted++;
    if (k == TENURE_EVENT_TYPE_VIEW_CHANGED) {
        size_t n = 0, i;
        uint64_t num = 0;
        int full = 0;
        (void)tenure_event_view(ev, &num);
        (void)tenure_event_member_count(ev, &n);
        for (i = 0; i < n; i++) {
            const char *id = NULL;
            bool f = false;
            if (tenure_event_member_at(ev, i, &id, &f) == TENURE_STATUS_OK && f) full++;
            if (i == 0 && id) snprintf(v->first_member, sizeof v->first_member, "%s", id);
        }
        {
            const char *id = NULL;
            bool f = false;
            if (tenure_event_member_at(ev, n, &id, &f) != TENURE_STATUS_INVALID_ARGUMENT) full = -100;
        }
        v->last_view = num;
        v->last_full = full;
        v->last_count = (int)n;
    }
    pthread_mutex_unlock(&v->mu);
}

static int view_wait_full(view_seen *v, int full, int limit_ms) {
    double end = now_ms() + limit_ms;
    for (;;) {
        int f;
        pthread_mutex_lock(&v->mu);
        f = v->last_full;
        pthread_mutex_unlock(&v->mu);
        if (f == full) return 1;
        if (now_ms() > end) return 0;
        sleep_ms(2);
    }
}

static int test_groups_promote_and_report_views(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL, *b = NULL;
    tenure_membership *ma = NULL, *mb = NULL;
    tenure_subscription *w = NULL;
    char addr[64];
    uint64_t view = 0;
    view_seen v;
    memset(&v, 0, sizeof v);
    pthread_mutex_init(&v.mu, NULL);
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(connect_client(addr, 5000, &a));
    CHECK_OK(connect_client(addr, 5000, &b));
    CHECK_OK(tenure_client_watch_group(b, "workers", make_cb(view_call, NULL, &v), &w));
    CHECK_OK(tenure_client_join(a, "workers", "w1", 100, false, no_cb(), &ma));
    CHECK_OK(tenure_client_join(b, "workers", "w2", 100, true, no_cb(), &mb));
    CHECK(tenure_membership_is_member(ma));
    CHECK_OK(tenure_membership_report_check(mb, true));
    CHECK(view_wait_full(&v, 2, 5000));
    CHECK(v.promoted == 2 && v.last_count == 2 && strcmp(v.first_member, "w1") == 0);
    CHECK(tenure_membership_is_full(ma));
    CHECK_OK(tenure_membership_view(ma, &view));
    CHECK(view > 0);
    CHECK_OK(tenure_subscription_view(w, &view));
    CHECK(view == v.last_view);
    CHECK_OK(tenure_membership_leave(mb));
    CHECK(!tenure_membership_is_member(mb));
    CHECK(view_wait_full(&v, 1, 5000));
    tenure_membership_free(ma);
    tenure_membership_free(mb);
    tenure_subscription_free(w);
    tenure_client_free(a);
    tenure_client_free(b);
    tenure_server_free(srv);
    pthread_mutex_destroy(&v.mu);
    return 0;
}

static int test_status_snapshot_and_string_buffers(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL;
    tenure_lock *l = NULL;
    tenure_service_status *st = NULL;
    char addr[64], small[4], name[64];
    size_t n = 0, need = 0, sessions = 0, locks = 0;
    uint64_t rev = 0, token = 0, holder = 0, session = 0, hi = 0, lo = 0, chi = 0, clo = 0;
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    /* A buffer too small: nothing copied, the length needed reported. */
    small[0] = 'x';
    CHECK_ST(tenure_server_address(srv, small, sizeof small, &need), TENURE_STATUS_BUFFER_TOO_SMALL);
    CHECK(need == strlen(addr) && small[0] == 'x');
    CHECK_ST(tenure_server_address(srv, NULL, 0, &need), TENURE_STATUS_BUFFER_TOO_SMALL);
    CHECK_ST(tenure_server_address(srv, addr, sizeof addr, NULL), TENURE_STATUS_NULL_ARGUMENT);
    CHECK_OK(tenure_server_address(srv, addr, need + 1, &n));
    CHECK(n == need && strncmp(addr, "127.0.0.1:", 10) == 0);
    CHECK_OK(connect_client(addr, 5000, &a));
    CHECK_OK(tenure_server_incarnation(srv, &hi, &lo));
    CHECK_OK(tenure_client_incarnation(a, &chi, &clo));
    CHECK(hi == chi && lo == clo && (hi | lo) != 0);
    CHECK_OK(tenure_client_lock(a, "status/lock", 2000, no_cb(), &l));
    CHECK_OK(tenure_client_session_id(a, &session));
    CHECK_OK(tenure_client_status(a, &st));
    CHECK_OK(tenure_service_status_counts(st, &rev, &sessions, &locks, NULL, NULL));
    CHECK(sessions == 1 && locks == 1 && rev >= tenure_lock_fencing_token(l));
    CHECK_OK(tenure_service_status_lock(st, 0, name, sizeof name, &n, &token, &holder));
    CHECK(strcmp(name, "status/lock") == 0 && token == tenure_lock_fencing_token(l) && holder == session);
    CHECK_ST(tenure_service_status_lock(st, 1, name, sizeof name, &n, &token, &holder),
             TENURE_STATUS_INVALID_ARGUMENT);
    tenure_service_status_free(st);
    tenure_lock_free(l);
    tenure_client_free(a);
    /* Stop, then free: the handle outlives the stop. */
    CHECK_OK(tenure_server_stop(srv));
    CHECK_OK(tenure_server_stop(srv));
    CHECK_OK(tenure_server_address(srv, addr, sizeof addr, &n));
    tenure_server_free(srv);
    return 0;
}

static int test_connecting_to_nothing_fails_cleanly(void) {
    tenure_client_builder *b = NULL;
    tenure_client *c = NULL;
    tenure_server_builder *sb = NULL;
    tenure_server *s = NULL;
    CHECK_OK(tenure_client_builder_new(&b));
    CHECK_OK(tenure_client_builder_add_endpoint(b, "127.0.0.1:1"));
    CHECK_OK(tenure_client_builder_set_connect_timeout_ms(b, 200));
    CHECK_ST(tenure_client_connect(b, &c), TENURE_STATUS_CONNECTION_FAILED);
    CHECK(c == NULL);
    CHECK_OK(tenure_server_builder_new(&sb));
    CHECK_OK(tenure_server_builder_set_listen(sb, "not an address"));
    CHECK_ST(tenure_server_start(sb, &s), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK(s == NULL);
    return 0;
}


/* Bad values through a live client: huge timeouts, empty and oversized names. */
static int test_bad_values_are_refused(void) {
    tenure_server *srv = NULL;
    tenure_client *a = NULL;
    tenure_client_builder *b = NULL;
    tenure_lock *l = NULL;
    tenure_election *e = NULL;
    tenure_membership *m = NULL;
    char addr[64], big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_OK(start_server(&srv, addr, sizeof addr));
    CHECK_OK(tenure_client_builder_new(&b));
    CHECK_OK(tenure_client_builder_add_endpoint(b, addr));
    CHECK_OK(tenure_client_builder_set_retry_policy(b, TENURE_RETRY_POLICY_FIXED));
    CHECK_ST(tenure_client_builder_set_retry_policy(b, 99), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_builder_set_connect_timeout_ms(b, 0), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_builder_set_client_name(b, big), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_builder_add_endpoint(b, ""), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_OK(tenure_client_connect(b, &a));
    CHECK_ST(tenure_client_lock(a, "x", UINT64_MAX, no_cb(), &l), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_lock(a, "", 10, no_cb(), &l), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_try_lock(a, big, no_cb(), &l), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK(l == NULL);
    CHECK_ST(tenure_client_campaign(a, "e", "", 1, NULL, no_cb(), &e), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_campaign(a, big, "id", 1, NULL, no_cb(), &e), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_ST(tenure_client_join(a, "g", "m", UINT64_MAX, false, no_cb(), &m), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK(e == NULL && m == NULL);
    /* After close, calls say so. */
    CHECK_OK(tenure_client_close(a));
    CHECK_ST(tenure_client_lock(a, "x", 10, no_cb(), &l), TENURE_STATUS_CLOSED);
    CHECK(!tenure_client_is_connected(a));
    tenure_client_free(a);
    tenure_server_free(srv);
    return 0;
}

/* ---- failure detection ---------------------------------------------------------------- */

typedef struct peer_events {
    pthread_mutex_t mu;
    int suspected_b_process; /* peer_suspected, peer "b", kind process, network NULL */
    int recovered_b;
    int other_suspicions;
} peer_events;

static void peer_call(void *ud, const tenure_event *ev) {
    peer_events *p = (peer_events *)ud;
    const char *peer = NULL, *net = "unset";
    tenure_suspicion_kind kind = TENURE_SUSPICION_KIND_NETWORK;
    tenure_event_type k = tenure_event_kind(ev);
    pthread_mutex_lock(&p->mu);
    if (k == TENURE_EVENT_TYPE_PEER_SUSPECTED) {
        (void)tenure_event_peer(ev, &peer);
        (void)tenure_event_network(ev, &net);
        (void)tenure_event_suspicion(ev, &kind);
        if (peer && strcmp(peer, "b") == 0 && net == NULL && kind == TENURE_SUSPICION_KIND_PROCESS) {
            p->suspected_b_process++;
        } else {
            p->other_suspicions++;
        }
    } else if (k == TENURE_EVENT_TYPE_PEER_RECOVERED) {
        (void)tenure_event_peer(ev, &peer);
        if (peer && strcmp(peer, "b") == 0) p->recovered_b++;
    }
    pthread_mutex_unlock(&p->mu);
}

static int free_udp_port(void) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int port, fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int peer_events_get(peer_events *p, int which) {
    int v;
    pthread_mutex_lock(&p->mu);
    v = which == 0 ? p->suspected_b_process : which == 1 ? p->recovered_b : p->other_suspicions;
    pthread_mutex_unlock(&p->mu);
    return v;
}

static int wait_peer_event(peer_events *p, int which, int limit_ms) {
    double end = now_ms() + limit_ms;
    while (peer_events_get(p, which) < 1) {
        if (now_ms() > end) return 0;
        sleep_ms(5);
    }
    return 1;
}

/* Three processes heartbeat each other on one network; b stops sending: a suspects b's
 * process (c is still heard, so it is not a network), then sees it recover. */
static int test_failure_detector_suspects_a_silent_peer(void) {
    static const char *names[3] = {"a", "b", "c"};
    char addrs[3][32], got[32];
    tenure_detector *d[3] = {NULL, NULL, NULL};
    tenure_subscription *s = NULL;
    size_t n = 0;
    int i, j;
    peer_events pe;
    memset(&pe, 0, sizeof pe);
    pthread_mutex_init(&pe.mu, NULL);
    /* The ports are probed free, then bound by the detectors: another process (or a probe
     * handing out the same port twice) may take one in between, so a start that finds its
     * port in use picks three new ones (at most five rounds). */
    for (int round = 0;; round++) {
        int started = 1;
        for (i = 0; i < 3; i++) {
            int port;
            do {
                port = free_udp_port();
                CHECK(port > 0);
                snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", port);
                for (j = 0; j < i && strcmp(addrs[j], addrs[i]) != 0; j++) {
                }
            } while (j < i);
        }
        for (i = 0; i < 3 && started; i++) {
            tenure_detector_builder *b = NULL;
            tenure_status st;
            CHECK_OK(tenure_detector_builder_new(names[i], 50, &b));
            CHECK_OK(tenure_detector_builder_add_network(b, "lan", addrs[i]));
            CHECK_ST(tenure_detector_builder_add_network(b, "lan", addrs[i]), TENURE_STATUS_INVALID_ARGUMENT);
            CHECK_ST(tenure_detector_builder_add_peer(b, "wan", "x", "127.0.0.1:9"), TENURE_STATUS_INVALID_ARGUMENT);
            for (j = 0; j < 3; j++) {
                if (j != i) CHECK_OK(tenure_detector_builder_add_peer(b, "lan", names[j], addrs[j]));
            }
            st = tenure_detector_start(b, &d[i]);
            if (st == TENURE_STATUS_IO && round < 4) {
                started = 0; /* the builder was consumed; try again with new ports */
                break;
            }
            CHECK_ST(st, TENURE_STATUS_OK);
            CHECK_ST(tenure_detector_builder_add_network(b, "x", "127.0.0.1:0"), TENURE_STATUS_INVALID_HANDLE);
        }
        if (started) break;
        for (j = 0; j < 3; j++) {
            tenure_detector_free(d[j]);
            d[j] = NULL;
        }
    }
    CHECK_OK(tenure_detector_local_address(d[0], "lan", got, sizeof got, &n));
    CHECK(strcmp(got, addrs[0]) == 0);
    CHECK_ST(tenure_detector_local_address(d[0], "wan", got, sizeof got, &n), TENURE_STATUS_INVALID_ARGUMENT);
    CHECK_OK(tenure_detector_subscribe(d[0], make_cb(peer_call, NULL, &pe), &s));
    sleep_ms(400); /* the timeouts learn the interval */
    CHECK_OK(tenure_detector_set_sending(d[1], "lan", false));
    CHECK(wait_peer_event(&pe, 0, 5000));
    CHECK_OK(tenure_detector_set_sending(d[1], "lan", true));
    CHECK(wait_peer_event(&pe, 1, 5000));
    /* Other suspicions (a loaded machine delaying a or c) are possible, so not asserted. */
    if (peer_events_get(&pe, 2) > 0) printf("     (%d other suspicions)\n", peer_events_get(&pe, 2));
    tenure_subscription_free(s);
    for (i = 0; i < 3; i++) tenure_detector_free(d[i]);
    tenure_detector_free(d[0]); /* double free: ignored */
    pthread_mutex_destroy(&pe.mu);
    return 0;
}

/* Runs last: every test freed what it created (builders consumed or freed included). */

/* ---- a replicated group ------------------------------------------------------------------- */

/* A free loopback port (bound, then let go: a member binds it right after). */
static int free_port(void) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int port = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* The id of the group's leader, from `tenure status --json`; 0 when none answers. */
static int leader_of(const char *bin, const char *endpoints) {
    char cmd[1024], out[8192];
    size_t n;
    const char *at;
    FILE *p;
    snprintf(cmd, sizeof cmd, "%s status --json --endpoints %s 2>/dev/null", bin, endpoints);
    p = popen(cmd, "r");
    if (!p) return 0;
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    pclose(p);
    at = strstr(out, "\"leader\":{");
    if (!at) return 0;
    at = strstr(at, "\"id\":");
    return at ? atoi(at + 5) : 0;
}

/* Three `tenure serve` processes (TENURE_BIN); a client given all three endpoints holds a lock,
 * the leader is killed with SIGKILL: the lock is kept, nothing is reported lost, and the next
 * lock is granted with a larger token. */
static int test_a_client_given_three_endpoints_survives_a_leader_kill(void) {
    const char *bin = getenv("TENURE_BIN");
    char dir[] = "/tmp/tenure-c-cluster-XXXXXX";
    char addrs[3][32], cluster[256], endpoints[128], cmd[1024];
    pid_t pids[3] = {0, 0, 0};
    tenure_client_builder *b = NULL;
    tenure_client *c = NULL;
    tenure_lock *held = NULL, *next = NULL;
    recorder lost;
    double t0;
    int i, leader, rc = 1;
    rec_init(&lost);
    CHECK(bin != NULL && access(bin, X_OK) == 0);
    CHECK(mkdtemp(dir) != NULL);
    for (i = 0; i < 3; i++) {
        int port = free_port();
        CHECK(port > 0);
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", port);
    }
    snprintf(cluster, sizeof cluster, "1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2]);
    snprintf(endpoints, sizeof endpoints, "%s,%s,%s", addrs[0], addrs[1], addrs[2]);
    for (i = 0; i < 3; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            char id[16], data[128];
            snprintf(id, sizeof id, "%d", i + 1);
            snprintf(data, sizeof data, "%s/m%d", dir, i + 1);
            /* A test that fails half-way leaves no member behind. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(127);
            execl(bin, bin, "serve", "--id", id, "--listen", addrs[i], "--data", data, "--cluster",
                  cluster, "--bootstrap", (char *)NULL);
            _exit(127);
        }
        pids[i] = pid;
    }
    CHECK_OK(tenure_client_builder_new(&b));
    for (i = 0; i < 3; i++) CHECK_OK(tenure_client_builder_add_endpoint(b, addrs[i]));
    CHECK_OK(tenure_client_builder_set_session_ttl_ms(b, 3000));
    t0 = now_ms();
    /* The group elects its first leader: connect once it serves (within 10 s). */
    while (tenure_client_connect(b, &c) != TENURE_STATUS_OK) {
        b = NULL;
        CHECK(now_ms() - t0 < 10000);
        sleep_ms(50);
        CHECK_OK(tenure_client_builder_new(&b));
        for (i = 0; i < 3; i++) CHECK_OK(tenure_client_builder_add_endpoint(b, addrs[i]));
        CHECK_OK(tenure_client_builder_set_session_ttl_ms(b, 3000));
    }
    CHECK_OK(tenure_client_lock(c, "c/held", 5000, rec_cb(&lost), &held));
    leader = leader_of(bin, endpoints);
    CHECK(leader >= 1 && leader <= 3);
    kill(pids[leader - 1], SIGKILL);
    waitpid(pids[leader - 1], NULL, 0);
    pids[leader - 1] = 0;
    t0 = now_ms();
    while (tenure_client_try_lock(c, "c/next", no_cb(), &next) != TENURE_STATUS_OK || next == NULL) {
        CHECK(now_ms() - t0 < 10000);
        sleep_ms(5);
    }
    CHECK(tenure_lock_fencing_token(next) > tenure_lock_fencing_token(held));
    CHECK(tenure_lock_is_held(held));
    CHECK(rec_calls(&lost) == 0);
    CHECK_OK(tenure_lock_release(next));
    CHECK_OK(tenure_lock_release(held));
    rc = 0;
    tenure_lock_free(next);
    tenure_lock_free(held);
    tenure_client_close(c);
    tenure_client_free(c);
    for (i = 0; i < 3; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return rc;
}

static int test_no_handle_is_left_alive(void) {
    CHECK(tenure_handles_alive() == 0);
    return 0;
}

int main(int argc, char **argv) {
    static const test_case tests[] = {
        {"version", test_version},
        {"limits_are_the_cores", test_limits_are_the_cores},
        {"status_strings_and_last_error", test_status_strings_and_last_error},
        {"null_arguments_are_errors", test_null_arguments_are_errors},
        {"invalid_utf8_is_an_error", test_invalid_utf8_is_an_error},
        {"double_free_and_consumed_builders", test_double_free_and_consumed_builders},
        {"connecting_to_nothing_fails_cleanly", test_connecting_to_nothing_fails_cleanly},
        {"lock_contention_between_two_clients", test_lock_contention_between_two_clients},
        {"lost_callback_before_the_next_grant", test_lost_callback_before_the_next_grant},
        {"revoke_reports_the_lock_lost_as_released", test_revoke_reports_the_lock_lost_as_released},
        {"on_event_from_the_builder_sees_the_first_connected",
         test_on_event_from_the_builder_sees_the_first_connected},
        {"master_change_callbacks_on_candidates_and_an_observer",
         test_master_change_callbacks_on_candidates_and_an_observer},
        {"drop_runs_exactly_once", test_drop_runs_exactly_once},
        {"freeing_from_inside_its_own_callback_does_not_deadlock",
         test_freeing_from_inside_its_own_callback_does_not_deadlock},
        {"a_callback_blocking_2s_does_not_cost_the_session",
         test_a_callback_blocking_2s_does_not_cost_the_session},
        {"groups_promote_and_report_views", test_groups_promote_and_report_views},
        {"status_snapshot_and_string_buffers", test_status_snapshot_and_string_buffers},
        {"bad_values_are_refused", test_bad_values_are_refused},
        {"failure_detector_suspects_a_silent_peer", test_failure_detector_suspects_a_silent_peer},
        {"a_client_given_three_endpoints_survives_a_leader_kill",
         test_a_client_given_three_endpoints_survives_a_leader_kill},
        {"no_handle_is_left_alive", test_no_handle_is_left_alive},
    };
    const char *suite = argc > 2 ? argv[2] : "test_api";
    return run_tests(suite, tests, sizeof tests / sizeof tests[0], argc > 1 && argv[1][0] ? argv[1] : NULL);
}
