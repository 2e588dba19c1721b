/*
 * An echo server written the way ouistiti's utils/websocket/echo.c is: an AF_UNIX stream
 * socket at <dir>/<name>, accept, one forked process per connection, select + recv + send.
 * It knows nothing of WebSocket or of wsgate: each recv() is taken as one message and sent
 * back with one send(). Run with LD_PRELOAD=libwsgate_ouistiti_ws.so behind wsgate in direct
 * mode (tests/py/test_shim.py), it serves WebSocket clients.
 *
 *   ouistiti_echo -R DIR -n NAME [-p PROTOCOL] [-b BUFSIZE] [-r] [-m fork|thread|select] [-e]
 *     -p   the protocol argument of socket(): 0, or 153 (ouistiti's WS_TEXT)
 *     -b   receive buffer size (default 65536)
 *     -r   use read()/write() instead of recv()/send()
 *     -m   one process per client (default, as echo.c), one thread per client (echo.c built
 *          with PTHREAD), or one process with one select() over every client (as chat.c)
 *     -e   before each accept, recv/read, send/write and close, set errno to a value no call
 *          sets, and say whether a call that succeeded left it alone (as libc does)
 *
 * As echo.c and chat.c, it decides on errno after any recv() that returned <= 0, the end of the
 * stream included: `ret <= 0 && errno != EAGAIN` closes the client; an EAGAIN, whenever it was
 * set, keeps it. A message "close" makes it close the connection itself. Lines on stderr say
 * what happened.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static size_t bufsize = 65536;
static int use_read;
static int check_errno;

/* -e: what errno is set to before each call; no call sets it. */
#define SENTINEL 12345

static void errno_set(void)
{
	if (check_errno)
		errno = SENTINEL;
}

/* -e: after `call` returned `ret`, says whether a success left errno alone (errno is kept). */
static void errno_check(const char *call, long ret)
{
	int e = errno;
	if (!check_errno || ret < 0)
		return;
	if (e == SENTINEL)
		fprintf(stderr, "echo: errno kept by %s\n", call);
	else
		fprintf(stderr, "echo: errno changed by %s: %d (%s)\n", call, e, strerror(e));
	errno = e;
}

static int checked_close(int sock)
{
	errno_set();
	int ret = close(sock);
	errno_check("close", ret);
	return ret;
}

static int checked_accept(int sock, struct sockaddr_storage *peer)
{
	socklen_t peerlen = sizeof(*peer);
	errno_set();
	int ret = accept(sock, (struct sockaddr *)peer, &peerlen);
	errno_check("accept", ret);
	return ret;
}

/* One readable client: 1 while it goes on, 0 once it is closed. */
static int serve_one(int sock, char *buffer)
{
	errno_set();
	ssize_t ret = use_read ? read(sock, buffer, bufsize) : recv(sock, buffer, bufsize, MSG_NOSIGNAL);
	errno_check(ret > 0 ? (use_read ? "read data" : "recv data") : (use_read ? "read end" : "recv end"), ret);
	if (ret > 0) {
		if (ret == 5 && memcmp(buffer, "close", 5) == 0) {
			fprintf(stderr, "echo: closing\n");
			checked_close(sock);
			return 0;
		}
		fprintf(stderr, "echo: receive %zd\n", ret);
		errno_set();
		ssize_t sent = use_read ? write(sock, buffer, (size_t)ret)
		                        : send(sock, buffer, (size_t)ret, MSG_DONTWAIT | MSG_NOSIGNAL);
		errno_check(use_read ? "write" : "send", sent);
		if (sent != ret)
			fprintf(stderr, "echo: send %zd of %zd: %s\n", sent, ret, strerror(errno));
		return 1;
	}
	/* echo.c's test: errno decides, after an end of stream (0) too */
	if (ret <= 0 && errno != EAGAIN) {
		if (ret == 0)
			fprintf(stderr, "echo: client closed\n");
		else
			fprintf(stderr, "echo: recv error %s\n", strerror(errno));
		checked_close(sock);
		return 0;
	}
	if (ret < 0)
		fprintf(stderr, "echo: nothing yet\n");
	return 1;
}

static void echo(int sock)
{
	char *buffer = malloc(bufsize);
	if (buffer == NULL)
		exit(1);
	for (;;) {
		fd_set rfds;
		FD_ZERO(&rfds);
		FD_SET(sock, &rfds);
		if (select(sock + 1, &rfds, NULL, NULL, NULL) <= 0)
			continue;
		if (!serve_one(sock, buffer))
			break;
	}
	free(buffer);
}

static void *echo_thread(void *arg)
{
	echo((int)(intptr_t)arg);
	return NULL;
}

static void describe(struct sockaddr_storage *peer)
{
	char text[INET6_ADDRSTRLEN] = "unix";
	if (peer->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)peer)->sin_addr, text, sizeof(text));
	else if (peer->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)peer)->sin6_addr, text, sizeof(text));
	fprintf(stderr, "echo: new connection from %s\n", text);
}

/* As chat.c: one select() over the listener and every client, in one process. */
static int select_loop(int sock)
{
	int clients[FD_SETSIZE];
	int n = 0;
	char *buffer = malloc(bufsize);
	if (buffer == NULL)
		return 1;
	for (;;) {
		fd_set rfds;
		FD_ZERO(&rfds);
		FD_SET(sock, &rfds);
		int maxfd = sock;
		for (int i = 0; i < n; i++) {
			FD_SET(clients[i], &rfds);
			maxfd = clients[i] > maxfd ? clients[i] : maxfd;
		}
		if (select(maxfd + 1, &rfds, NULL, NULL, NULL) <= 0)
			continue;
		if (FD_ISSET(sock, &rfds)) {
			struct sockaddr_storage peer;
			int newsock = checked_accept(sock, &peer);
			if (newsock >= 0 && n < FD_SETSIZE - 1 && newsock < FD_SETSIZE) {
				describe(&peer);
				clients[n++] = newsock;
			}
		}
		for (int i = 0; i < n; i++) {
			if (FD_ISSET(clients[i], &rfds) && !serve_one(clients[i], buffer))
				clients[i--] = clients[--n];
		}
	}
}

int main(int argc, char **argv)
{
	const char *root = "/var/run/websocket";
	const char *name = "echo";
	int protocol = 0;
	const char *model = "fork";
	int opt;

	while ((opt = getopt(argc, argv, "R:n:p:b:rm:e")) != -1) {
		switch (opt) {
		case 'R': root = optarg; break;
		case 'n': name = optarg; break;
		case 'p': protocol = atoi(optarg); break;
		case 'b': bufsize = (size_t)atol(optarg); break;
		case 'r': use_read = 1; break;
		case 'm': model = optarg; break;
		case 'e': check_errno = 1; break;
		default: return 2;
		}
	}
	signal(SIGCHLD, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);

	int sock = socket(AF_UNIX, SOCK_STREAM, protocol);
	if (sock < 0) {
		fprintf(stderr, "echo: socket: %s\n", strerror(errno));
		return 1;
	}
	struct sockaddr_un addr;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof(addr.sun_path) - 1, "%s/%s", root, name);
	unlink(addr.sun_path);
	if (bind(sock, (struct sockaddr *)&addr, sizeof(addr)) != 0 || chmod(addr.sun_path, 0777) != 0
	    || listen(sock, 50) != 0) {
		fprintf(stderr, "echo: %s: %s\n", addr.sun_path, strerror(errno));
		return 1;
	}
	fprintf(stderr, "echo: listening on %s\n", addr.sun_path);
	if (strcmp(model, "select") == 0)
		return select_loop(sock);

	for (;;) {
		struct sockaddr_storage peer;
		int newsock = checked_accept(sock, &peer);
		if (newsock < 0) {
			fprintf(stderr, "echo: accept: %s\n", strerror(errno));
			return 1;
		}
		describe(&peer);
		if (strcmp(model, "thread") == 0) {
			pthread_t thread;
			if (pthread_create(&thread, NULL, echo_thread, (void *)(intptr_t)newsock) == 0)
				pthread_detach(thread);
			continue;
		}
		pid_t pid = fork();
		if (pid == 0) {
			checked_close(sock);
			echo(newsock);
			_exit(0);
		}
		/* the parent's copy: closed at once, as echo.c does */
		checked_close(newsock);
	}
}
