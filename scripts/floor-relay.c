/*
 * floor-relay: the floor of what a WebSocket relay can cost, for scripts/bench.py.
 *
 *   floor-relay PORT UNIX_PATH
 *
 * Listens on 127.0.0.1:PORT; for each client it connects to the UNIX socket UNIX_PATH (a
 * WebSocket echo that answers the upgrade itself: backend/examples/ws_unix_echo) and copies
 * bytes unchanged both ways until either side closes. No parsing, no framing, no buffering
 * beyond one read: the naive relay (one read and one write per readiness, level-triggered
 * epoll), which is what any gateway costs at least: a WebSocket gateway also parses the
 * upgrade and the frames, a proxy like this does not.
 *
 * A write that cannot take all the bytes keeps the rest and stops reading the other side
 * until the writable event; nothing is dropped. Built by scripts/bench.py with gcc -O2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF 65536
#define MAX_FD 65536

/* One direction: bytes read from `from`, not yet written to `to`. */
struct half {
    int from, to;
    size_t off, len;
    char buf[BUF];
};

/* Each fd's half whose source it is; its peer's half is the other direction. */
static struct half *reading[MAX_FD];
static int epfd;

static void want(int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

static void drop_pair(int fd) {
    struct half *h = reading[fd];
    if (!h) return;
    int a = h->from, b = h->to;
    struct half *g = reading[b];
    close(a);
    close(b);
    reading[a] = reading[b] = NULL;
    free(h);
    free(g);
}

/* What fd `fd` may be asked for now: read unless its bytes wait for the peer; write when the
 * other direction's bytes wait for it. */
static void rearm(int fd) {
    struct half *mine = reading[fd];
    if (!mine) return;
    struct half *theirs = reading[mine->to];
    unsigned ev = 0;
    if (mine->len == 0) ev |= EPOLLIN;
    if (theirs && theirs->len) ev |= EPOLLOUT;
    want(fd, ev);
}

/* Writes what `h` holds; returns -1 on error. */
static int flush(struct half *h) {
    while (h->len) {
        ssize_t n = write(h->to, h->buf + h->off, h->len);
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        h->off += (size_t)n;
        h->len -= (size_t)n;
    }
    h->off = 0;
    return 0;
}

static void on_event(int fd, unsigned events) {
    struct half *mine = reading[fd];
    if (!mine) return;
    if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
        drop_pair(fd);
        return;
    }
    if (events & EPOLLOUT) {
        struct half *theirs = reading[mine->to];
        if (theirs && flush(theirs) < 0) {
            drop_pair(fd);
            return;
        }
    }
    if (events & EPOLLIN && mine->len == 0) {
        ssize_t n = read(fd, mine->buf, BUF);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            drop_pair(fd);
            return;
        }
        if (n > 0) {
            mine->len = (size_t)n;
            mine->off = 0;
            if (flush(mine) < 0) {
                drop_pair(fd);
                return;
            }
        }
    }
    int peer = mine->to;
    rearm(fd);
    rearm(peer);
}

static int add(int fd) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor-relay PORT UNIX_PATH\n");
        return 2;
    }
    struct sockaddr_un ua = {.sun_family = AF_UNIX};
    if (strlen(argv[2]) >= sizeof ua.sun_path) {
        fprintf(stderr, "floor-relay: socket path too long\n");
        return 2;
    }
    strcpy(ua.sun_path, argv[2]);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
        perror("floor-relay: listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    add(lfd);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 1;
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd != lfd) {
                on_event(fd, events[i].events);
                continue;
            }
            for (;;) {
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0) break;
                int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (c >= MAX_FD || u < 0 || u >= MAX_FD ||
                    connect(u, (struct sockaddr *)&ua, sizeof ua) < 0) {
                    close(c);
                    if (u >= 0) close(u);
                    continue;
                }
                fcntl(u, F_SETFL, O_NONBLOCK);
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                /* malloc, not calloc: the buffers' pages stay untouched until used. */
                struct half *up = malloc(sizeof *up), *down = malloc(sizeof *down);
                if (!up || !down) {
                    free(up);
                    free(down);
                    close(c);
                    close(u);
                    continue;
                }
                up->from = c, up->to = u, up->off = up->len = 0;
                down->from = u, down->to = c, down->off = down->len = 0;
                reading[c] = up;
                reading[u] = down;
                add(c);
                add(u);
            }
        }
    }
}
