/*
 * wsgate_rpc.h - the plugin ABI of websocket_jsonrpc (version 1).
 *
 * websocket_jsonrpc speaks JSON-RPC 2.0 with WebSocket clients; the methods come from a
 * shared library given with -L and configured with the string given with -C. This header
 * is all a plugin needs: plain C, no JSON library imposed. The server parses and validates
 * the request (parse error, invalid request, batches, notifications) and hands the plugin
 * the method name and the params as JSON text; the plugin answers with JSON text.
 *
 * Life cycle, all calls from the server's single thread, never two at once:
 *
 *   wsgate_rpc_abi_version()        once, right after loading; must return WSGATE_RPC_ABI_VERSION
 *   wsgate_rpc_init(config)         once, after the server dropped its privileges (-u):
 *                                   the plugin never runs as root
 *   wsgate_rpc_open(plugin, ctx)    per WebSocket client (optional)
 *   wsgate_rpc_call(conn, ...)      per request and per notification
 *   wsgate_rpc_close(conn)          when that client leaves (optional)
 *   wsgate_rpc_fini(plugin)         once, at exit (optional)
 *
 * A call blocks the server's event loop: methods must be quick (no network, no waiting).
 *
 * Strings passed in are UTF-8, NUL-terminated and valid only during the call.
 */
#ifndef WSGATE_RPC_H
#define WSGATE_RPC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. */
#define WSGATE_RPC_ABI_VERSION 1u

/* Status codes wsgate_rpc_call returns. 0 is success; anything else is the JSON-RPC error
 * code of the response (the spec's codes below, or the application's own, e.g. -32000 to
 * -32099 "server error", or any other integer). */
#define WSGATE_RPC_OK 0
#define WSGATE_RPC_INVALID_PARAMS (-32602)   /* params do not fit the method */
#define WSGATE_RPC_METHOD_NOT_FOUND (-32601) /* no such method */
#define WSGATE_RPC_INTERNAL_ERROR (-32603)   /* the plugin failed */

/* Returns WSGATE_RPC_ABI_VERSION. A library whose version differs is refused. */
unsigned wsgate_rpc_abi_version(void);

/*
 * Starts the plugin. `config` is the -C string ("" when -C was not given); what it means
 * is the plugin's business (a database path, for instance). Returns the plugin's state,
 * handed back to wsgate_rpc_open and wsgate_rpc_fini, or NULL when the plugin cannot
 * start: the server then exits with an error.
 */
void *wsgate_rpc_init(const char *config);

/*
 * Optional. A client connected. `context` is the connection context the gateway sent
 * (NAME=value lines, one per line, such as "REMOTE_ADDR=192.168.1.20"; see the README,
 * "Connection context"), or "" when the gateway sends none. Returns the per-connection
 * state handed to wsgate_rpc_call and wsgate_rpc_close, or NULL to refuse the client (the
 * server closes it). Without this function every call gets the `plugin` pointer itself.
 */
void *wsgate_rpc_open(void *plugin, const char *context);

/*
 * Runs `method` with `params`, the request's params as JSON text: an object, an array, or
 * `null` when the request had none.
 *
 * On success write the result, one JSON value (any JSON text: an object, "null", "42"...),
 * to out[0 .. out_cap), store its length in *out_len and return WSGATE_RPC_OK. The server
 * checks that it is valid JSON (if not, the client gets -32603).
 *
 * On failure return the error code and write a short human-readable message, plain UTF-8
 * text, not JSON (the server quotes it), to `out` (*out_len = 0 for the spec's standard
 * message). A method that does not exist returns WSGATE_RPC_METHOD_NOT_FOUND.
 *
 * Nothing may be written past out_cap; a result that does not fit is an error to return
 * (WSGATE_RPC_INTERNAL_ERROR, "result too large"). For a notification (a request without
 * an id) the server calls the method the same way and discards what it writes.
 */
int wsgate_rpc_call(void *conn, const char *method, const char *params, char *out,
                    size_t out_cap, size_t *out_len);

/* Optional. The client of `conn` left; free what wsgate_rpc_open allocated. */
void wsgate_rpc_close(void *conn);

/* Optional. The server is exiting; free what wsgate_rpc_init allocated. */
void wsgate_rpc_fini(void *plugin);

#ifdef __cplusplus
}
#endif

#endif /* WSGATE_RPC_H */
