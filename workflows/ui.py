"""``amnet ui``: the MLflow UI on this project's tracking store.

With the embedded store (``.mlflow/mlflow.db``) it starts ``mlflow ui`` on 127.0.0.1 with job
execution off (two processes instead of ten) and serves until Ctrl-C. With a remote
``MLFLOW_TRACKING_URI`` / ``tracking.tracking_uri`` there is nothing to start: it checks the
server and prints its URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from workflows.cli import add_config_arguments
from workflows.config import load_config

log = logging.getLogger(__name__)


def ui_command(uri: str, host: str, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    mlflow_cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    return [*mlflow_cmd, "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (%(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="port (%(default)s)")
    parser.add_argument("--print-only", action="store_true",
                        help="print the command / URL instead of starting the UI")


def run(args: argparse.Namespace) -> int:
    from workflows.tracking import check_tracking_server, resolve_tracking_uri

    cfg = load_config(args.params, args.overrides)
    uri = resolve_tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        check_tracking_server(uri)
        print(f"tracking server: {uri} (open it in a browser)")
        return 0
    cmd = ui_command(uri, args.host, args.port)
    if args.print_only:
        print(" ".join(cmd))
        return 0
    check_tracking_server(uri)  # creates .mlflow/ if needed
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # become the UI process: Ctrl-C / SIGTERM reach mlflow directly, nothing is left orphaned
    os.execve(cmd[0], cmd, env)
    return 0  # not reached
