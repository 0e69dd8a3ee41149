/* echo: returns what it is sent.
 * Unary handler [plugin.echo] protocol (default "echo") answers with the
 * request bytes; stream handler [plugin.echo] stream_protocol (default
 * "/natpeer/echo/1.0.0") writes back every byte it reads. */
#include <natpeer/plugin.h>
#include <stdlib.h>

typedef struct echo {
  const np_host_api *api;
} echo;

static void echo_on_call(np_call *c, const uint8_t *req, size_t len,
                         void *ud) {
  echo *e = ud;
  e->api->call_reply(c, req, len);
}

static void echo_on_open(np_stream *s, void *ud) {
  (void)s, (void)ud;
}

static void echo_on_data(np_stream *s, const uint8_t *data, size_t len,
                         void *ud) {
  echo *e = ud;
  if (len == 0) { /* the remote finished writing: finish too */
    e->api->stream_close(s);
    return;
  }
  /* A full send buffer means a peer that writes without reading: echo
   * cannot keep up with it, so give up on that stream. */
  if (e->api->stream_write(s, data, len) < 0)
    e->api->stream_close(s);
}

static void echo_on_close(np_stream *s, int err, void *ud) {
  (void)s, (void)err, (void)ud;
}

static const np_stream_cbs echo_stream = {sizeof(np_stream_cbs), echo_on_open,
                                          echo_on_data, echo_on_close, NULL};

static int echo_init(np_plugin *p, const np_host_api *api, void **plugin_ud) {
  const char *proto = api->conf_get(p, "protocol");
  const char *sproto = api->conf_get(p, "stream_protocol");
  echo *e = calloc(1, sizeof(*e));
  int rv;
  if (e == NULL)
    return NP_ENOMEM;
  e->api = api;
  rv = api->register_unary(p, proto ? proto : "echo", echo_on_call, e);
  if (rv == 0)
    rv = api->register_stream(p, sproto ? sproto : "/natpeer/echo/1.0.0",
                              &echo_stream, e);
  if (rv < 0) {
    free(e);
    return rv;
  }
  *plugin_ud = e;
  return 0;
}

static void echo_shutdown(np_plugin *p, void *ud) {
  (void)p;
  free(ud);
}

NP_PLUGIN_DEFINE2("echo", "1.0.0", echo_init, echo_shutdown,
                  "returns the request bytes (unary) or the stream (stream)")
