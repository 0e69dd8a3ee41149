/* Test plugin that misuses its call handles: "tp.double" answers, then
 * answers again and fails the same (now gone) call; "tp.double.later"
 * answers, then answers again from a timer. "tp.double.result" reports
 * what the extra calls returned ("rv2=… rv3=… late=…"). The host must
 * refuse each extra answer with NP_EINVAL, never touch freed memory. */
#include <natpeer/plugin.h>
#include <stdio.h>
#include <string.h>

static const np_host_api *A;
static np_plugin *P;
static int rv2 = 1, rv3 = 1, late = 1;
static np_call *kept;

static void on_double(np_call *c, const uint8_t *req, size_t len, void *ud) {
  (void)req, (void)len, (void)ud;
  A->call_reply(c, (const uint8_t *)"first", 5);
  rv2 = A->call_reply(c, (const uint8_t *)"second", 6);
  rv3 = A->call_fail(c, "third");
}

static void on_timer(np_timer *t, void *ud) {
  (void)t, (void)ud;
  late = A->call_reply(kept, (const uint8_t *)"late", 4);
}

static void on_later(np_call *c, const uint8_t *req, size_t len, void *ud) {
  np_timer *t;
  (void)req, (void)len, (void)ud;
  kept = c;
  A->call_reply(c, (const uint8_t *)"now", 3);
  A->timer_start(P, &t, 20, on_timer, NULL);
}

static void on_result(np_call *c, const uint8_t *req, size_t len, void *ud) {
  char out[96];
  (void)req, (void)len, (void)ud;
  snprintf(out, sizeof(out), "rv2=%d rv3=%d late=%d", rv2, rv3, late);
  A->call_reply(c, (const uint8_t *)out, strlen(out));
}

static int init(np_plugin *p, const np_host_api *api, void **ud) {
  (void)ud;
  A = api;
  P = p;
  if (api->register_unary(p, "tp.double", on_double, NULL) != 0 ||
      api->register_unary(p, "tp.double.later", on_later, NULL) != 0 ||
      api->register_unary(p, "tp.double.result", on_result, NULL) != 0)
    return NP_EINVAL;
  return 0;
}

NP_PLUGIN_DEFINE("tp_double", "1.0", init, NULL)
