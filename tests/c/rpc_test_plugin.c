/*
 * A websocket_jsonrpc plugin written in C against backend/plugins/wsgate_rpc.h, compiled and loaded
 * by tests/py/test_jsonrpc.py. No JSON library: params are matched with sscanf.
 *
 * -C: "fail" makes init fail. Methods:
 *   hello             -> "hello from C"
 *   add [a, b]        -> a + b (integers), -32602 otherwise
 *   count             -> 1, 2, 3... per connection (state from wsgate_rpc_open)
 *   peer              -> the REMOTE_ADDR of the connection context, or null
 *   config            -> the -C string (as a JSON string, unescaped: tests pass plain text)
 *   broken            -> success with text that is not JSON (the server answers -32603)
 *   fail              -> error -32000 "it failed"
 *   anything else     -> -32601
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsgate_rpc.h"

#ifndef TEST_ABI_VERSION
#define TEST_ABI_VERSION WSGATE_RPC_ABI_VERSION
#endif

struct plugin {
    char config[256];
    int open_conns;
};

struct conn {
    struct plugin *plugin;
    long count;
    char peer[64];
};

unsigned wsgate_rpc_abi_version(void) { return TEST_ABI_VERSION; }

void *wsgate_rpc_init(const char *config)
{
    if (strcmp(config, "fail") == 0)
        return NULL;
    struct plugin *p = calloc(1, sizeof *p);
    if (p != NULL)
        snprintf(p->config, sizeof p->config, "%s", config);
    return p;
}

void *wsgate_rpc_open(void *plugin, const char *context)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->plugin = plugin;
    const char *addr = strstr(context, "REMOTE_ADDR=");
    if (addr != NULL)
        sscanf(addr + strlen("REMOTE_ADDR="), "%63[^\n]", c->peer);
    c->plugin->open_conns++;
    return c;
}

static int reply(char *out, size_t cap, size_t *len, int code, const char *text)
{
    int n = snprintf(out, cap, "%s", text);
    if (n < 0 || (size_t)n >= cap)
        return WSGATE_RPC_INTERNAL_ERROR;
    *len = (size_t)n;
    return code;
}

int wsgate_rpc_call(void *conn, const char *method, const char *params, char *out,
                    size_t out_cap, size_t *out_len)
{
    struct conn *c = conn;
    char buf[512];
    if (strcmp(method, "hello") == 0)
        return reply(out, out_cap, out_len, WSGATE_RPC_OK, "\"hello from C\"");
    if (strcmp(method, "add") == 0) {
        long a, b;
        char end;
        if (sscanf(params, " [ %ld , %ld %c", &a, &b, &end) != 3 || end != ']')
            return reply(out, out_cap, out_len, WSGATE_RPC_INVALID_PARAMS, "add takes [a, b]");
        snprintf(buf, sizeof buf, "%ld", a + b);
        return reply(out, out_cap, out_len, WSGATE_RPC_OK, buf);
    }
    if (strcmp(method, "count") == 0) {
        snprintf(buf, sizeof buf, "%ld", ++c->count);
        return reply(out, out_cap, out_len, WSGATE_RPC_OK, buf);
    }
    if (strcmp(method, "peer") == 0) {
        if (c->peer[0] == '\0')
            return reply(out, out_cap, out_len, WSGATE_RPC_OK, "null");
        snprintf(buf, sizeof buf, "\"%s\"", c->peer);
        return reply(out, out_cap, out_len, WSGATE_RPC_OK, buf);
    }
    if (strcmp(method, "config") == 0) {
        snprintf(buf, sizeof buf, "\"%s\"", c->plugin->config);
        return reply(out, out_cap, out_len, WSGATE_RPC_OK, buf);
    }
    if (strcmp(method, "broken") == 0)
        return reply(out, out_cap, out_len, WSGATE_RPC_OK, "{not json");
    if (strcmp(method, "fail") == 0)
        return reply(out, out_cap, out_len, -32000, "it failed");
    *out_len = 0;
    return WSGATE_RPC_METHOD_NOT_FOUND;
}

void wsgate_rpc_close(void *conn)
{
    struct conn *c = conn;
    c->plugin->open_conns--;
    free(c);
}

void wsgate_rpc_fini(void *plugin)
{
    struct plugin *p = plugin;
    /* Every connection must be closed before fini: say so if not. */
    if (p->open_conns != 0)
        fprintf(stderr, "rpc_test_plugin: fini with %d connections open\n", p->open_conns);
    free(p);
}
