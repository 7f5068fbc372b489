#!/usr/bin/env bash
# Starts a local MLflow tracking server for the mlflow test of python/tests/test_runs.py
# (the loader's `mlflow.log_input` and run tags, checked through the server's REST API).
#
#   .ci/mlflow-up.sh          # venv target/mlflow-venv (pinned mlflow), server on 127.0.0.1:5078
#   .ci/mlflow-up.sh --stop   # stops the server this script started
#   eval "$(.ci/mlflow-up.sh | grep '^export ')"   # to export SMELT_MLFLOW_URL in the caller
#
# Idempotent: an answering server is left as it is. State: target/mlflow.db (sqlite backend),
# target/mlflow-artifacts, log target/mlflow.log, pid target/mlflow.pid. Installing mlflow
# into a fresh venv and starting the server took 64 s on the 2-core dev machine (wheels from PyPI);
# mlflow-skinny==3.17.2 alone (the client) installs in 17 s.
# The client side (the process that runs the loader) needs only `mlflow-skinny` of the same
# version: the test runs it with SMELT_MLFLOW_PYTHON (default: the interpreter running pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
MLFLOW_VERSION=3.17.2
PORT=${SMELT_MLFLOW_PORT:-5078}
URL="http://127.0.0.1:$PORT"
VENV=target/mlflow-venv

answers() {
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$URL/health" 2>/dev/null
}

if [ "${1:-}" = "--stop" ]; then
    if [ -f target/mlflow.pid ]; then
        pg=$(cat target/mlflow.pid)
        kill -- "-$pg" 2>/dev/null || true
        for _ in $(seq 1 10); do
            if ! kill -0 -- "-$pg" 2>/dev/null; then break; fi
            sleep 1
        done
        kill -9 -- "-$pg" 2>/dev/null || true  # the job consumers it starts can outlive a SIGTERM
        rm -f target/mlflow.pid
    fi
    exit 0
fi

mkdir -p target
if ! answers; then
    if [ ! -x "$VENV/bin/mlflow" ] || ! "$VENV/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" 2>/dev/null; then
        echo "mlflow-up: installing mlflow==$MLFLOW_VERSION into $VENV" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
    fi
    mkdir -p target/mlflow-artifacts
    # setsid: its own process group, so --stop ends the server and its gunicorn/uvicorn workers.
    setsid "$VENV/bin/mlflow" server --host 127.0.0.1 --port "$PORT" \
        --backend-store-uri "sqlite:///$PWD/target/mlflow.db" \
        --default-artifact-root "$PWD/target/mlflow-artifacts" >target/mlflow.log 2>&1 &
    echo $! >target/mlflow.pid
    for _ in $(seq 1 120); do
        if answers; then break; fi
        if ! kill -0 "$(cat target/mlflow.pid)" 2>/dev/null; then
            echo "mlflow-up: the server exited; its log (target/mlflow.log):" >&2
            tail -n 30 target/mlflow.log >&2
            exit 1
        fi
        sleep 1
    done
    if ! answers; then
        echo "mlflow-up: no answer from $URL/health after 120 s; see target/mlflow.log" >&2
        exit 1
    fi
fi
echo "mlflow-up: MLflow $MLFLOW_VERSION answers at $URL (log target/mlflow.log)" >&2
echo "export SMELT_MLFLOW_URL=$URL"
echo "# the loader's process needs the client: pip install mlflow-skinny==$MLFLOW_VERSION" >&2
echo "# (or SMELT_MLFLOW_PYTHON=$PWD/$VENV/bin/python for the test)" >&2
