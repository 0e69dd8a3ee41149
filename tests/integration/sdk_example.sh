#!/bin/sh
# The tutorial in sdk/README.md works as written: its plugin source compiles
# with the documented flags against the SDK header alone, loads, and answers.
. "$(dirname "$0")/lib.sh"

command -v cc >/dev/null 2>&1 || skip_all "no C compiler"
awk '/^```c$/{f=1; next} /^```$/{if (f) exit} f' "$top_srcdir/sdk/README.md" >"$T/greet.c"
check "the tutorial has a C example" grep -q NP_PLUGIN_DEFINE "$T/greet.c"
mkdir -p "$T/plugins" "$T/data"
cc -std=c99 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -Wl,-z,defs \
   -I "$top_srcdir/sdk" -o "$T/greet.so" "$T/greet.c" 2>"$T/cc.err"
check "it compiles with -Wall -Wextra -Werror against the SDK header only" [ -f "$T/greet.so" ]
check "it exports only np_plugin_entry" sh -c '[ "$(nm -D --defined-only "$1" | awk "{print \$3}" | grep -v "^_")" = np_plugin_entry ]' _ "$T/greet.so"
install_so "$T/greet.so" "$T/plugins/greet.so"
cat >"$T/host.ini" <<INI
[host]
data_dir = $T/data
listen = /ip4/127.0.0.1/udp/0/quic-v1
[plugins]
dir = $T/plugins
INI
out=$("$HOST" --config "$T/host.ini" --call greet --data bob 2>"$T/log")
id=$("$HOST" --config "$T/host.ini" --print-peer-id 2>/dev/null)
check "the tutorial plugin answers (\"$out\")" [ "$out" = "hello bob, you are $id" ]
finish
