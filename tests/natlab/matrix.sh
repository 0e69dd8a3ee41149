#!/bin/sh
# Issue 10's NAT matrix: every pair of {eif, adf, apdf, sym} x the same,
# TRIES tries each (default 10), natpeer private hosts and js-libp2p ones
# side by side in the same run (columns natpeer:natpeer and js:js), a js
# relay on public-1 (MATRIX_RELAY=natpeer for natpeer's). Root only; about
# 25 min; not part of make check. The harness and its settings are
# js_matrix.sh's (see matrix.md); results go to tests/natlab/results/.
d=$(dirname "$0")
MATRIX_LAUNCHERS="${MATRIX_LAUNCHERS:-$d/nplib.sh}" \
MATRIX_COLUMNS="${MATRIX_COLUMNS:-natpeer:natpeer js:js}" \
  exec sh "$d/js_matrix.sh" "${1:-10}"
