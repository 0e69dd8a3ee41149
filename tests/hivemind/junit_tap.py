"""pytest's JUnit XML -> TAP lines (no plan), numbered from argv[2]. Prints the count of
tests last, on stderr. Failures carry their first message line; skips and xfails are SKIPs."""
import sys
import xml.etree.ElementTree as ET

n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    n += 1
    name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
    bad = case.find("failure")
    if bad is None:
        bad = case.find("error")
    skip = case.find("skipped")
    if bad is not None:
        why = (bad.get("message") or "").splitlines()[0:1]
        print(f"not ok {n} - {name} # {why[0] if why else bad.tag}"[:400])
    elif skip is not None:
        why = (skip.get("message") or "").splitlines()
        kind = "xfail" if skip.get("type") == "pytest.xfail" else "skip"
        print(f"ok {n} - {name} # SKIP {kind}: {why[0] if why else ''}"[:400])
    else:
        print(f"ok {n} - {name}")
print(n, file=sys.stderr)
