/*
 * A chat server written the way ouistiti's utils/websocket/chat.c is: an AF_UNIX stream socket
 * at <dir>/<name>, one process, one pselect() over the listener and every client; a message
 * from a client goes to every other client (send with MSG_DONTWAIT); a read() that returns
 * <= 0 with errno other than EAGAIN is a client leaving: "goodbye", close, dropped from the
 * list. Nothing about WebSocket or wsgate: run with LD_PRELOAD=libwsgate_ouistiti_ws.so behind
 * wsgate in direct mode (tests/py/test_shim.py), it serves WebSocket clients.
 *
 *   ouistiti_chat -R DIR -n NAME
 *
 * Lines on stderr say what happened.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_USERS 64

static int users[MAX_USERS];
static int nusers;

static void broadcast(int from, const char *buffer, size_t length)
{
	for (int i = 0; i < nusers; i++) {
		if (users[i] != from)
			send(users[i], buffer, length, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
}

int main(int argc, char **argv)
{
	const char *root = "/var/run/websocket";
	const char *name = "chat";
	int opt;

	while ((opt = getopt(argc, argv, "R:n:")) != -1) {
		switch (opt) {
		case 'R': root = optarg; break;
		case 'n': name = optarg; break;
		default: return 2;
		}
	}
	setvbuf(stderr, NULL, _IOLBF, 0);

	int sock = socket(AF_UNIX, SOCK_STREAM, 0);
	if (sock < 0) {
		fprintf(stderr, "chat: socket: %s\n", strerror(errno));
		return 1;
	}
	struct sockaddr_un addr;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof(addr.sun_path) - 1, "%s/%s", root, name);
	unlink(addr.sun_path);
	if (bind(sock, (struct sockaddr *)&addr, sizeof(addr)) != 0 || chmod(addr.sun_path, 0777) != 0
	    || listen(sock, 50) != 0) {
		fprintf(stderr, "chat: %s: %s\n", addr.sun_path, strerror(errno));
		return 1;
	}
	fprintf(stderr, "chat: listening on %s\n", addr.sun_path);

	sigset_t none;
	sigemptyset(&none);
	for (;;) {
		fd_set rfds;
		FD_ZERO(&rfds);
		FD_SET(sock, &rfds);
		int maxfd = sock;
		for (int i = 0; i < nusers; i++) {
			FD_SET(users[i], &rfds);
			maxfd = users[i] > maxfd ? users[i] : maxfd;
		}
		if (pselect(maxfd + 1, &rfds, NULL, NULL, NULL, &none) <= 0)
			continue;
		if (FD_ISSET(sock, &rfds)) {
			struct sockaddr_storage peer;
			socklen_t peerlen = sizeof(peer);
			int newsock = accept(sock, (struct sockaddr *)&peer, &peerlen);
			if (newsock >= 0 && nusers < MAX_USERS && newsock < FD_SETSIZE) {
				users[nusers++] = newsock;
				fprintf(stderr, "chat: new connection %d\n", newsock);
			} else if (newsock >= 0) {
				close(newsock);
			}
		}
		for (int i = 0; i < nusers; i++) {
			if (!FD_ISSET(users[i], &rfds))
				continue;
			char buffer[512];
			ssize_t length = read(users[i], buffer, sizeof(buffer));
			/* chat.c's test: errno decides, after an end of stream (0) too */
			if (length <= 0 && errno != EAGAIN) {
				fprintf(stderr, "chat: goodbye %d\n", users[i]);
				close(users[i]);
				users[i--] = users[--nusers];
			} else if (length > 0) {
				broadcast(users[i], buffer, (size_t)length);
			}
		}
	}
}
