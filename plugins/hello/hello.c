/* hello: answers every unary call with "Hello, World!".
 * [plugin.hello] protocol = NAME   (default "hello")
 * [plugin.hello] message = TEXT    (default "Hello, World!") */
#include <natpeer/plugin.h>
#include <stdlib.h>
#include <string.h>

typedef struct hello {
  const np_host_api *api; /* borrowed, lives as long as the host */
  const char *msg;        /* borrowed from the config, valid until shutdown */
} hello;

static void hello_on_call(np_call *c, const uint8_t *req, size_t len,
                          void *ud) {
  hello *h = ud;
  (void)req, (void)len;
  h->api->call_reply(c, (const uint8_t *)h->msg, strlen(h->msg));
}

static int hello_init(np_plugin *p, const np_host_api *api, void **plugin_ud) {
  const char *proto = api->conf_get(p, "protocol");
  hello *h = calloc(1, sizeof(*h));
  int rv;
  if (h == NULL)
    return NP_ENOMEM;
  h->api = api;
  h->msg = api->conf_get(p, "message");
  if (h->msg == NULL)
    h->msg = "Hello, World!";
  rv = api->register_unary(p, proto ? proto : "hello", hello_on_call, h);
  if (rv < 0) {
    free(h); /* failed init: no shutdown follows */
    return rv;
  }
  *plugin_ud = h;
  return 0;
}

static void hello_shutdown(np_plugin *p, void *ud) {
  (void)p;
  free(ud);
}

NP_PLUGIN_DEFINE2("hello", "1.0.0", hello_init, hello_shutdown,
                  "answers Hello, World!")
