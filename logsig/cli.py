"""The ``logsig`` command: one thin entry point per component.

Every option can also be set in the environment or ``.env`` (see ``.env.example``); a flag
given on the command line wins. Exit codes: 0 success, 1 runtime failure, 2 bad usage or
configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from logsig.errors import LogsigError, SettingsError
from logsig.settings import Settings

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _add_network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", dest="gateway_host", help="gateway address (GATEWAY_HOST)")
    p.add_argument("--port", dest="gateway_port", type=int, help="gateway port (GATEWAY_PORT)")


def _add_batching(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", dest="batch_size", type=int, help="lines per batch (BATCH_SIZE)")
    p.add_argument("--timeout", dest="timeout", type=float,
                   help="seconds before a partial batch is flushed (TIMEOUT)")


def _add_analyze(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    an = sub.add_parser("analyze", help="analyze a whole file on the workers; print one report")
    an.add_argument("file", help="log file or chat export to upload")
    an.add_argument("--profile", choices=["logs", "chat"], required=True, help="what to count")
    an.add_argument("--chunks", type=int, default=0,
                    help="chunks to cut the file into (default: worker processes, at least 4)")
    an.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    an.add_argument("--year", type=int, default=None,
                    help="year of syslog stamps, which have none (default: the file's mtime)")
    an.add_argument("--host", dest="gateway_host", help="gateway address (GATEWAY_HOST)")
    an.add_argument("--port", dest="analyze_port", type=int, help="analysis port (ANALYZE_PORT)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logsig", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    parser.add_argument("--redis-url", dest="redis_url", help="Redis URL (REDIS_URL)")
    parser.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, ... (LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True)

    gw = sub.add_parser("gateway", help="run the Forward protocol gateway")
    _add_network(gw)
    _add_batching(gw)

    ag = sub.add_parser("agent", help="tail files / stdin / a generator and ship batches")
    ag.add_argument("paths", nargs="*", help="files or glob patterns to follow")
    ag.add_argument("--stdin", action="store_true", help="read lines from standard input")
    ag.add_argument("--generate", type=float, metavar="RATE",
                    help="generate realistic mixed log lines at RATE lines/s")
    ag.add_argument("--count", type=int, help="with --generate: stop after this many lines")
    ag.add_argument("--seed", type=int, default=None, help="with --generate: random seed")
    ag.add_argument("--name", dest="agent_name",
                    help="host name sent with each record (AGENT_NAME)")
    ag.add_argument("--registry", dest="registry_path", help="offset registry file (REGISTRY_PATH)")
    ag.add_argument("--tag", dest="tag", help="Forward tag (FLUENT_TAG)")
    _add_network(ag)
    _add_batching(ag)

    wk = sub.add_parser("worker", help="run a prefork Celery worker that scans batches")
    wk.add_argument("--concurrency", dest="worker_concurrency", type=int,
                    help="worker processes (WORKER_CONCURRENCY, default: cores)")
    wk.add_argument("--hostname", default=None, help="Celery node name (default logsig@%%h)")

    rs = sub.add_parser("results", help="print per-signature and per-agent counts")
    rs.add_argument("--json", action="store_true", help="machine-readable output")
    rs.add_argument("--limit", type=int, default=10, help="recent matches to show")

    hc = sub.add_parser("health", help="exit 0 if a component answers (for healthchecks)")
    hc.add_argument("target", choices=["redis", "gateway", "worker"])
    hc.add_argument("--hostname", default=None, help="worker node to ping (default logsig@host)")

    ru = sub.add_parser("rules", help="validate rule packs or try the rules on a log file")
    rsub = ru.add_subparsers(dest="rules_command", required=True)
    rc = rsub.add_parser("check", help="validate rule files; exit 1 naming each bad rule")
    rc.add_argument("path", help="rule file or directory (several joined with os.pathsep)")
    rt = rsub.add_parser("test", help="run the rules over a log file (like fail2ban-regex)")
    rt.add_argument("logfile", help="log file to scan")
    rt.add_argument("--rules", dest="rules_file", default=None,
                    help="use only the rules in this file/directory (default: shipped packs)")
    rt.add_argument("--json", action="store_true", help="every matching line as JSON")

    _add_analyze(sub)

    dm = sub.add_parser("demo", help="run the whole pipeline on generated logs and print results")
    dm.add_argument("--lines", type=int, default=20_000, help="lines per agent")
    return parser


_SETTING_FLAGS = ("redis_url", "log_level", "gateway_host", "gateway_port", "analyze_port",
                  "batch_size",
                  "timeout", "agent_name", "registry_path", "tag", "worker_concurrency")


def _settings(args: argparse.Namespace) -> Settings:
    base = Settings.from_env(dotenv_path=args.env_file)
    return base.replace(**{k: getattr(args, k, None) for k in _SETTING_FLAGS})


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "gateway":
        from gateway.server import run as run_gateway

        return run_gateway(settings)
    if args.command == "agent":
        from agents.runner import run as run_agent

        return run_agent(settings, args.paths, use_stdin=args.stdin, rate=args.generate,
                         count=args.count, seed=args.seed)
    if args.command == "worker":
        from workers.worker import run as run_worker

        return run_worker(settings, hostname=args.hostname)
    if args.command == "results":
        from workers.results import show

        return show(settings, as_json=args.json, limit=args.limit)
    if args.command == "health":
        from logsig.health import check

        return check(settings, args.target, hostname=args.hostname)
    if args.command == "rules":
        from workers.rulescli import rules_check, rules_test

        if args.rules_command == "check":
            return rules_check(args.path, sys.stdout, sys.stderr)
        return rules_test(args.logfile, args.rules_file, args.json, sys.stdout, sys.stderr)
    if args.command == "analyze":
        from logsig.analyze import run as run_analyze

        return run_analyze(settings, args.file, args.profile, chunks=args.chunks,
                           as_json=args.json, year=args.year)
    if args.command == "demo":
        from logsig.demo import run as run_demo

        return run_demo(settings, lines_per_agent=args.lines)
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"logsig: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    try:
        return _dispatch(args, settings)
    except LogsigError as exc:
        logging.getLogger("logsig").error("%s", exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
