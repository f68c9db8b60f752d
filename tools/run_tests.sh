#!/usr/bin/env bash
# `make test`: the whole suite on two pytest workers (pytest-xdist, --dist loadfile: each test module on one worker,
# so its module-scoped fixtures are made once), to finish sooner on 2 cores. The tests marked `distributed`
# (horovodrun -np 2 or simulated hosts) take turns (tests/helpers.py: one_horovod_job_at_a_time), never two Horovod
# jobs at once; the trained-model fixture is made once for both workers (tests/conftest.py).
# Each process gets one OpenMP thread unless OMP_NUM_THREADS is set: MXNet's OpenMP threads spin while they wait,
# so two workers of two threads each on 2 cores slow each other down. Gloo's timeout is raised from 30 s to 300 s
# unless set: beside other tests, a two-worker run once aborted (status 134), likely a peer late past 30 s.
# usage: tools/run_tests.sh [PYTEST ARGS...]   (PY: the interpreter, default .venv/bin/python)
set -u
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export HOROVOD_GLOO_TIMEOUT_SECONDS=${HOROVOD_GLOO_TIMEOUT_SECONDS:-300}
exec "$PY" -m pytest -n 2 --dist loadfile "$@"
