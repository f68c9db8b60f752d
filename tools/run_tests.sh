#!/usr/bin/env bash
# `make test`: the whole suite in two parts, to finish sooner on 2 cores.
#  1. the tests that start no horovodrun, on two pytest workers (pytest-xdist; tests/conftest.py keeps each test
#     module on one worker, and the modules sharing the trained-model fixture together);
#  2. the tests marked `distributed` (horovodrun -np 2 or simulated hosts), one at a time, on a machine left to
#     them: their workers need both cores, and Gloo times out a worker that waits too long for its peer.
# Arguments go to both parts (e.g. -x, -k NAME); a part that they leave without tests does not fail the run.
# usage: tools/run_tests.sh [PYTEST ARGS...]   (PY: the interpreter, default .venv/bin/python)
set -u
PY=${PY:-.venv/bin/python}
"$PY" -m pytest -n 2 --dist loadgroup -m "not distributed" "$@"; first=$?
"$PY" -m pytest -m distributed "$@"; second=$?
# pytest's status 5: no tests collected (here: the arguments selected none in that part)
if [ "$first" -eq 5 ] && [ "$second" -eq 5 ]; then exit 5; fi
for status in "$first" "$second"; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
done
exit 0
