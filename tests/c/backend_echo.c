/*
 * An echo backend written against wsgate_backend.h (tests/py/test_capi.py builds it with
 * `pkg-config --cflags --libs wsgate-backend` and runs it behind the gateway).
 *
 *   backend_echo PATH MODE [direct] [context] [max_message]
 *
 * MODE is the relay mode (stream, lines, framed, seqpacket; with `direct`, the mode used when no
 * socket is handed over). Every message is echoed with its type, except two text commands:
 *   "close CODE REASON"  closes the connection with CODE and REASON;
 *   "whoami"             answers "direct=D peer=ADDR:PORT path=P query=Q protocol=S".
 * One poll(2) loop, every descriptor non-blocking; SIGTERM ends it (the socket file is removed).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wsgate_backend.h>

#define MAX_CONNS 64

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static const char *value(const struct wsb_conn *c, const char *name) {
    const char *v = wsb_value(c, name);
    return v ? v : "-";
}

static void end(struct wsb_conn **conns, int i, const char *why) {
    fprintf(stderr, "backend_echo: conn %d: done (%s)\n", i, why);
    wsb_free(conns[i]);
    conns[i] = NULL;
}

/* Serves connection i until it would block or ends. */
static void serve(struct wsb_conn **conns, int i) {
    struct wsb_conn *c = conns[i];
    for (;;) {
        /* Echo only with an empty queue: the echo of a message of max_message bytes fits. */
        int r = wsb_flush(c);
        if (r == -EAGAIN)
            return;
        if (r < 0) {
            end(conns, i, strerror(-r));
            return;
        }
        struct wsb_message m;
        r = wsb_recv(c, &m);
        if (r == -EAGAIN)
            return;
        if (r == WSB_DONE) {
            end(conns, i, "closed");
            return;
        }
        if (r < 0) {
            end(conns, i, strerror(-r));
            return;
        }
        if (r == WSB_CLOSED) {
            fprintf(stderr, "backend_echo: conn %d: client closed with %d\n", i, m.close_code);
            continue;
        }
        if (r == WSB_FAILED) {
            fprintf(stderr, "backend_echo: conn %d: failed with %d: %s\n", i, m.close_code,
                    wsb_error(c));
            continue;
        }
        if (m.type == WSB_TEXT && m.len > 6 && memcmp(m.data, "close ", 6) == 0) {
            char cmd[128];
            size_t n = m.len < sizeof cmd - 1 ? m.len : sizeof cmd - 1;
            memcpy(cmd, m.data, n);
            cmd[n] = 0;
            char *reason = NULL;
            long code = strtol(cmd + 6, &reason, 10);
            if (*reason == ' ')
                reason++;
            r = wsb_close(c, (int)code, reason);
            fprintf(stderr, "backend_echo: conn %d: closing with %ld: %d\n", i, code, r);
            continue;
        }
        if (m.type == WSB_TEXT && m.len == 6 && memcmp(m.data, "whoami", 6) == 0) {
            char who[1024];
            int n = snprintf(who, sizeof who, "direct=%d peer=%s:%s path=%s query=%s protocol=%s",
                             wsb_is_direct(c), value(c, "REMOTE_ADDR"), value(c, "REMOTE_PORT"),
                             value(c, "SCRIPT_NAME"), value(c, "QUERY_STRING"),
                             value(c, "SEC_WEBSOCKET_PROTOCOL"));
            r = wsb_send(c, WSB_TEXT, who, (size_t)n);
        } else {
            r = wsb_send(c, m.type, m.data, m.len);
        }
        if (r < 0 && r != -EAGAIN) {
            end(conns, i, strerror(-r));
            return;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PATH MODE [direct] [context] [max_message]\n", argv[0]);
        return 2;
    }
    static const char *const modes[] = {"stream", "lines", "framed", "seqpacket"};
    int mode = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(argv[2], modes[i]) == 0)
            mode = i;
    unsigned flags = 0;
    size_t max_message = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "direct") == 0)
            flags |= WSB_DIRECT;
        else if (strcmp(argv[i], "context") == 0)
            flags |= WSB_CONTEXT;
        else
            max_message = strtoul(argv[i], NULL, 10);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct wsb_listener *l;
    int r = wsb_listen(argv[1], mode, flags, max_message, &l);
    if (r < 0) {
        fprintf(stderr, "backend_echo: %s: %s\n", argv[1], strerror(-r));
        return 1;
    }
    fprintf(stderr, "backend_echo: listening on %s\n", argv[1]);

    struct wsb_conn *conns[MAX_CONNS] = {0};
    while (!stop) {
        struct pollfd fds[MAX_CONNS + 1];
        int idx[MAX_CONNS + 1];
        int n = 0;
        fds[n++] = (struct pollfd){wsb_listener_fd(l), POLLIN, 0};
        for (int i = 0; i < MAX_CONNS; i++) {
            if (conns[i]) {
                fds[n] = (struct pollfd){wsb_fd(conns[i]), wsb_events(conns[i]), 0};
                idx[n++] = i;
            }
        }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("poll");
            break;
        }
        if (fds[0].revents) {
            struct wsb_conn *c;
            while ((r = wsb_accept(l, &c)) == 0) {
                int i = 0;
                while (i < MAX_CONNS && conns[i])
                    i++;
                if (i == MAX_CONNS) {
                    wsb_free(c);
                    continue;
                }
                conns[i] = c;
                fprintf(stderr, "backend_echo: conn %d: accepted, direct=%d peer=%s\n", i,
                        wsb_is_direct(c), value(c, "REMOTE_ADDR"));
                serve(conns, i);
            }
            if (r != -EAGAIN)
                fprintf(stderr, "backend_echo: accept: %s\n", strerror(-r));
        }
        for (int k = 1; k < n; k++)
            if (fds[k].revents && conns[idx[k]])
                serve(conns, idx[k]);
    }
    for (int i = 0; i < MAX_CONNS; i++)
        wsb_free(conns[i]);
    fprintf(stderr, "backend_echo: rejected %lu\n", wsb_listener_rejected(l));
    wsb_listener_free(l);
    return 0;
}
