/*
 * wsgate_backend.h: the backend library of wsgate, for C.
 *
 * A backend listens on a UNIX socket in the gateway's docroot. The gateway reaches it in one of
 * two ways, and this library gives the same connection object for both:
 *
 *   - direct mode (gateway --direct, ouistiti's options = "direct"): after the 101 the gateway
 *     hands the client's TCP socket over, with a record of the request (peer address, path,
 *     query, subprotocol) and the client bytes it had already read. The library is then the
 *     WebSocket server on that socket: it reassembles messages, checks text as UTF-8, answers
 *     pings and runs the closing handshake;
 *   - a relay mode (stream, lines, framed, seqpacket; see the README): the gateway stays in the
 *     middle and the library decodes its relay stream. Only `framed` carries message types and
 *     close codes; in the other modes messages arrive as text and closing ends the stream.
 *
 * With WSB_DIRECT, a connection that comes without a socket (the gateway relays this endpoint)
 * is served in the relay mode given, so one backend serves both ways.
 *
 * Link: cc app.c $(pkg-config --cflags --libs wsgate-backend)
 *       (static: pkg-config --static --libs, with libwsgate_backend.a)
 *
 * Errors: functions returning int return 0 (or a documented positive value) on success and a
 * negative errno on failure: -EAGAIN when the call would block, -EINVAL for a bad argument
 * (a NULL pointer, an unknown mode), others as documented. No function aborts or longjmps on
 * bad input, and none ever blocks.
 *
 * Ownership: wsb_listen and wsb_accept give objects the caller owns and frees with
 * wsb_listener_free and wsb_free. Strings and buffers the library returns belong to the object
 * they came from: see each function for how long they stay valid.
 *
 * Threads: there is no locking inside. An object may be used from any thread, but from one
 * thread at a time; different connections may be used from different threads at once.
 *
 * Non-blocking use with poll(2) (one descriptor per object; it never changes):
 *
 *   struct wsb_listener *l;
 *   if (wsb_listen("/var/run/websocket/echo", WSB_FRAMED, WSB_DIRECT, 0, &l) < 0) exit(1);
 *   for (;;) {
 *       fds[0] = (struct pollfd){ wsb_listener_fd(l), POLLIN, 0 };
 *       for each connection c: fds[i] = (struct pollfd){ wsb_fd(c), wsb_events(c), 0 };
 *       poll(fds, n, -1);
 *       while (wsb_accept(l, &c) == 0) add c;           (until -EAGAIN)
 *       for each connection c with revents:
 *           for (;;) {
 *               int r = wsb_recv(c, &m);
 *               if (r == WSB_MESSAGE) wsb_send(c, m.type, m.data, m.len);
 *               else if (r == -EAGAIN) break;               (wait for wsb_events(c))
 *               else if (r == WSB_DONE || r < 0) { wsb_free(c); break; }
 *               (WSB_CLOSED, WSB_FAILED: the answer is queued; go on until WSB_DONE)
 *           }
 *   }
 *
 * Call wsb_recv until -EAGAIN before waiting on a connection, and right after wsb_accept:
 * bytes may already wait inside the library (the client's frames sent with its upgrade
 * request, messages that came with the context), where poll cannot see them.
 *
 * A connection that stays closing (wsb_is_open() == 0 but not WSB_DONE) waits for the client's
 * answer: bound that time with a timer of your own and wsb_free it.
 */
#ifndef WSGATE_BACKEND_H
#define WSGATE_BACKEND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Relay modes (wsb_listen's `mode`): the gateway's -m for this endpoint. */
#define WSB_STREAM 0
#define WSB_LINES 1
#define WSB_FRAMED 2
#define WSB_SEQPACKET 3 /* a SOCK_SEQPACKET socket; not with WSB_DIRECT */

/* wsb_listen's `flags`. */
/* WSB_DIRECT: expect the client's socket (gateway --direct). A connection without one is
 * recognised by its first bytes (the context, with the gateway's --context; else the client's
 * first message) and served in `mode`; until then it waits in the listener's table of 32 pending
 * connections, so a relaying gateway should send the context. */
#define WSB_DIRECT 0x1u
#define WSB_CONTEXT 0x2u /* the gateway sends the connection context (--context) */

/* Message types. */
#define WSB_TEXT 1
#define WSB_BINARY 2

/* wsb_recv's results (>= 0). */
#define WSB_DONE 0    /* the connection is over: wsb_free it */
#define WSB_MESSAGE 1 /* a whole message is in *msg */
#define WSB_CLOSED 2  /* the client closed (code in msg->close_code); the answer is queued */
#define WSB_FAILED 3  /* the connection failed (wsb_error says why); a close is queued */

/* The socket the gateway connects to, and the connections still being handed over. */
struct wsb_listener;
/* One client. */
struct wsb_conn;

/* What wsb_recv found. */
struct wsb_message {
    /* WSB_MESSAGE: WSB_TEXT (valid UTF-8) or WSB_BINARY. */
    int type;
    /* WSB_MESSAGE: the message; valid until the next call on the connection. Not
     * NUL-terminated. */
    const unsigned char *data;
    size_t len;
    /* WSB_CLOSED: the client's close code, 0 when it sent none. WSB_FAILED: the code of the
     * close sent (1002 protocol error, 1007 invalid UTF-8, 1009 too big, 1011 relay error). */
    int close_code;
};

/*
 * Creates the UNIX socket `path` (mode 0660; a dead socket there is replaced, any other file is
 * left alone) and listens. `mode` is one of WSB_STREAM..WSB_SEQPACKET; `flags` is 0 or
 * WSB_DIRECT and/or WSB_CONTEXT; `max_message` is the largest message received in bytes (0: 1
 * MiB; a bigger one fails the connection with close 1009). Up to `max_message` (plus framing)
 * bytes may wait to be written per connection.
 * Returns 0 and *out, or -EINVAL, -EADDRINUSE (a live socket is there), -EEXIST (a file that is
 * not a socket), -ENAMETOOLONG, -EACCES, ...
 */
int wsb_listen(const char *path, int mode, unsigned flags, size_t max_message,
               struct wsb_listener **out);

/* The descriptor to poll for POLLIN: new connections, or hand-overs progressing. */
int wsb_listener_fd(const struct wsb_listener *l);

/*
 * Takes the next complete connection: 0 and *out, -EAGAIN when none is ready (call it on each
 * POLLIN until -EAGAIN), -EMFILE/-ENFILE/-ENOMEM (try again later). Connections whose
 * hand-over is malformed are dropped silently (see wsb_listener_rejected).
 */
int wsb_accept(struct wsb_listener *l, struct wsb_conn **out);

/* How many connections were dropped because their hand-over or stream was bad. */
unsigned long wsb_listener_rejected(const struct wsb_listener *l);

/* Closes the socket, removes its file, frees the listener (NULL is ignored). Connections
 * already accepted live on. */
void wsb_listener_free(struct wsb_listener *l);

/* The connection's descriptor (the client's TCP socket in direct mode, the gateway's UNIX
 * connection otherwise), for poll/epoll. Never read, write or close it yourself. */
int wsb_fd(const struct wsb_conn *c);

/* The poll events to wait for: POLLIN, with POLLOUT when output waits. */
short wsb_events(const struct wsb_conn *c);

/* 1 when the client's socket was handed over (direct mode), 0 when relayed. */
int wsb_is_direct(const struct wsb_conn *c);

/* 1 while messages may be sent (no close sent or received, no failure). */
int wsb_is_open(const struct wsb_conn *c);

/*
 * A value of the connection context, NUL-terminated, or NULL when absent: "REMOTE_ADDR" (IPv4
 * or IPv6, whole), "REMOTE_PORT", "SERVER_PORT", "REQUEST_URI", "SCRIPT_NAME", "QUERY_STRING",
 * "HTTP_HOST", "HTTP_ORIGIN", "SEC_WEBSOCKET_PROTOCOL", "HTTPS", and headers the gateway was
 * told to pass (--context-header). In direct mode they come with the hand-over; in a relay mode
 * only with WSB_CONTEXT (and the gateway's --context). Valid until wsb_free.
 */
const char *wsb_value(const struct wsb_conn *c, const char *name);

/*
 * Writes what waits (pongs, answers), then reads and decodes up to the next event:
 * WSB_MESSAGE, WSB_CLOSED, WSB_FAILED, WSB_DONE (see above), -EAGAIN (wait for wsb_events),
 * or another negative errno (the socket failed: wsb_free it).
 */
int wsb_recv(struct wsb_conn *c, struct wsb_message *msg);

/*
 * Queues a message (`type` WSB_TEXT or WSB_BINARY; text must be UTF-8) and writes what it can.
 * 0, -EAGAIN (the queue is full: wait for POLLOUT and try again), -EMSGSIZE (it can never fit
 * the queue), -EPIPE (the connection is closing), -EINVAL, or the socket's error.
 */
int wsb_send(struct wsb_conn *c, int type, const void *data, size_t len);

/*
 * Starts the closing handshake with `code` (1000-1003, 1007-1011, 3000-4999) and `reason`
 * (NULL or a NUL-terminated UTF-8 string, cut to 123 bytes): a close frame in direct mode, a
 * close record in framed mode; in the other relay modes the stream is ended and the gateway
 * closes the client with its own code. Then call wsb_recv until WSB_DONE.
 * 0, -EINVAL (a code that may not be sent, a reason that is not UTF-8), or the socket's error.
 */
int wsb_close(struct wsb_conn *c, int code, const char *reason);

/* Writes what is queued: 0 when all is written, -EAGAIN when some waits (POLLOUT), or the
 * socket's error. */
int wsb_flush(struct wsb_conn *c);

/* Why the connection failed (after WSB_FAILED or an error), or "". Valid until the next call
 * on the connection. */
const char *wsb_error(const struct wsb_conn *c);

/* Closes the connection's socket and frees it (NULL is ignored). */
void wsb_free(struct wsb_conn *c);

#ifdef __cplusplus
}
#endif

#endif /* WSGATE_BACKEND_H */
