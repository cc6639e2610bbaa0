r"""``python -m service serve``: run the API with uvicorn, like the documented command.

    python -m service serve --store models_store --model feed --port 8000
    # same as: MTRANK_MODELS_DIR=models_store MTRANK_MODEL=feed \
    #          uvicorn --factory service.main:create_app --host 127.0.0.1 --port 8000

Options become ``MTRANK_*`` environment variables, so every worker process builds the same settings;
any other setting is read from the environment (or ``MTRANK_CONFIG_FILE``) as usual. Connections are
served by ``service.http_protocol:HeadGuardProtocol`` (request heads get a deadline and a size limit),
closed after ``MTRANK_KEEP_ALIVE_SECONDS`` idle, and bounded by ``MTRANK_MAX_CONNECTIONS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uvicorn import Config

APP = "service.main:create_app"
HTTP_PROTOCOL = "service.http_protocol:HeadGuardProtocol"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve a published model over HTTP (uvicorn)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", help="model store directory (MTRANK_MODELS_DIR)")
    parser.add_argument("--model", help="model name in the store (MTRANK_MODEL)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes; each connection goes to the one holding the fewest (default 1)",
    )
    parser.add_argument("--redis", help="Redis URL for online features and the user cache")
    parser.add_argument(
        "--admin-token-file",
        help="enable /admin with the bearer token in this file (MTRANK_ADMIN_TOKEN_FILE)",
    )
    parser.add_argument(
        "--admin-token",
        help="enable /admin with this bearer token; visible to every local user in the process "
        "list: prefer MTRANK_ADMIN_TOKEN or --admin-token-file",
    )
    parser.add_argument(
        "--log-format", choices=("json", "text"), help="log lines as JSON or text (default json)"
    )
    parser.set_defaults(func=run)


def settings_environment(args: argparse.Namespace) -> dict[str, str]:
    """The ``MTRANK_*`` variables the command line sets (unset options keep the environment's)."""
    given = {
        "MTRANK_MODELS_DIR": args.store,
        "MTRANK_MODEL": args.model,
        "MTRANK_REDIS_URL": args.redis,
        "MTRANK_ADMIN_TOKEN": args.admin_token,
        "MTRANK_ADMIN_TOKEN_FILE": args.admin_token_file,
        "MTRANK_LOG_FORMAT": args.log_format,
    }
    return {name: str(value) for name, value in given.items() if value is not None}


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.logging_config import configure_logging
    from service.settings import Settings, resolve_model_name

    if args.workers < 1:
        print(f"--workers must be >= 1, got {args.workers}")
        return 2
    if args.admin_token is not None:
        print(
            "warning: --admin-token is visible to every local user in the process list (ps); "
            "use MTRANK_ADMIN_TOKEN or --admin-token-file instead",
            file=sys.stderr,
        )
    os.environ.update(settings_environment(args))
    try:  # fail here, with the reason, rather than in every worker
        settings = Settings()
    except ValueError as exc:
        print(f"cannot serve: {exc}")
        return 2
    # before uvicorn starts: the supervisor of --workers N logs through uvicorn's loggers, and with
    # MTRANK_LOG_FORMAT=json every line this process writes must be JSON
    configure_logging(settings.log_format, settings.log_level)
    log = logging.getLogger(__name__)
    try:
        model = resolve_model_name(settings)
    except ValueError as exc:  # start anyway, not ready until a model appears: no restart loop
        log.warning("nothing to serve yet: %s; /readyz answers 503 until then", exc)
        model = "no model yet"
    log.info(
        "serving %s from %s on http://%s:%d (docs: /docs)",
        model, settings.models_dir, args.host, args.port,
    )  # fmt: skip
    options: dict[str, Any] = {
        "factory": True,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_config": None,  # the app configures logging (MTRANK_LOG_FORMAT)
        "http": HTTP_PROTOCOL,  # deadline and size limit on request heads (service/http_protocol.py)
        "timeout_keep_alive": settings.keep_alive_seconds,
        "limit_concurrency": settings.max_connections,
        # after SIGTERM the app drains for MTRANK_DRAIN_SECONDS, then in-flight requests get this
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds) + 1,
    }
    if args.workers > 1:
        return _serve_workers(uvicorn.Config(APP, **options), log)
    uvicorn.run(APP, **options)
    return 0


def _serve_workers(config: Config, log: logging.Logger) -> int:
    """``--workers N``: the supervisor accepts and hands each connection to the worker holding the
    fewest (``service/fleet/balancer.py``); uvicorn's shared socket where that cannot be done here."""
    from uvicorn.supervisors import Multiprocess

    from service.fleet.balancer import BalancedSupervisor, balance_supported, listening_socket

    reason = balance_supported(config)
    if reason is not None:
        log.warning("workers share one listening socket (%s): connections opened together may "
                    "all go to one worker", reason)  # fmt: skip
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    try:
        listener = listening_socket(config.host, config.port, config.backlog)
    except OSError as exc:
        print(f"cannot listen on {config.host}:{config.port} ({exc}): stop what holds the port, "
              "or choose another --port", file=sys.stderr)  # fmt: skip
        return 1
    log.info("listening on http://%s:%d, each connection handed to the one of %d workers "
             "holding the fewest", config.host, listener.getsockname()[1], config.workers)  # fmt: skip
    BalancedSupervisor(config, listener).run()
    return 0
