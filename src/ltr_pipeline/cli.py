"""The `ltr` command. Thin: parse flags, call the pipeline, print.

Exit codes: 0 success; 1 unexpected error; 2 usage error; 3 configuration; 4 data (no or too few events);
5 event source unavailable; 6 registry or storage; 7 integrity (checksum mismatch); 8 model cannot be loaded;
10 `ltr run`: the gate rejected the new model and the champion stays; 11 `ltr soak`: a success criterion is not
met; 12 `ltr guard`: the live version failed a check (rolled back or flagged).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError, RegistryError, VersionNotFound
from ltr_pipeline.measures import NDCG_AT_5
from ltr_pipeline.record import RunReport, headline, to_builtins

EXIT_REJECTED = 10
EXIT_CRITERIA_NOT_MET = 11
EXIT_GUARD_ACTED = 12

app = typer.Typer(help="ltr-pipeline: a self-feeding Learning-to-Rank pipeline.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
registry_app = typer.Typer(help="Inspect and change the model registry.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
# Piped output gets a wide console so tables are not cut to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # one line per message, whatever the width

def _print_version(value: bool) -> None:
    if value:
        from ltr_pipeline import __version__

        sys.stdout.write(f"ltr-pipeline {__version__}\n")
        raise typer.Exit()


DEBUG = False  # --debug: an unexpected error shows its traceback


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit."),
             debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error.")
             ) -> None:
    """ltr-pipeline: a self-feeding Learning-to-Rank pipeline."""
    global DEBUG
    DEBUG = debug


HomeOpt = typer.Option(None, "--home", help="Root folder for events, runs, logs, registry ($LTR_HOME).")
RegistryOpt = typer.Option(None, "--registry", help="Registry path or s3://bucket/prefix ($LTR_REGISTRY_URI).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def settings_from(**overrides: Any) -> Settings:
    aliases = {"home": "home", "registry": "registry_uri"}
    values = {aliases.get(k, k): v for k, v in overrides.items() if v is not None}
    return Settings(**values)


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(to_builtins(obj), option=orjson.OPT_INDENT_2).decode() + "\n")


def _setup_logs(settings: Settings, name: str) -> None:
    from ltr_pipeline.logs import configure_logging

    configure_logging(settings.logs_path / name, stream=None)


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 100:  # a count, as the gate's samples
        return f"{value:.0f}"
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


@app.command()
def simulate(
    days: int = typer.Option(28, min=1, help="Days to simulate."),
    start: datetime | None = typer.Option(None, formats=["%Y-%m-%d"], help="First day (default: DAYS ago)."),
    cases_per_day: int = typer.Option(300, min=1, help="Cases per day."),
    candidates: int = typer.Option(10, min=2, help="Candidates shown per case."),
    bias: float = typer.Option(0.0, min=0.0, max=1.0, help="Clients' bias against --bias-group (0 = none)."),
    bias_group: str = typer.Option("F", help="The group the bias acts against."),
    seed: int | None = typer.Option(None, help="Random seed ($LTR_SEED)."),
    to: str = typer.Option("file", help="file: $LTR_EVENTS_DIR/YYYY-MM-DD/events.jsonl; kafka: the topic."),
    home: Path | None = HomeOpt,
    registry: str | None = RegistryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write synthetic match events to files or the Kafka topic, ranked by the live model."""
    from ltr_pipeline.errors import ObjectNotFound, VersionNotFound
    from ltr_pipeline.registry import ModelRegistry
    from ltr_pipeline.scoring import LgbmScorer, WeightedSumScorer, default_weights
    from ltr_pipeline.simulate import SimConfig, simulate_days

    settings = settings_from(home=home, registry=registry, seed=seed)
    _setup_logs(settings, "ltr_training.log")
    names = settings.feature_names
    first = start.date() if start else datetime.now(UTC).date() - timedelta(days=days)
    try:
        bundle = ModelRegistry.from_settings(settings).load()
        live: tuple[Any, str | None] = (LgbmScorer(bundle.model_text, names), bundle.version)
    except (VersionNotFound, ObjectNotFound):
        live = (WeightedSumScorer(default_weights(names), names), None)
    config = SimConfig(seed=settings.seed, cases_per_day=cases_per_day, candidates=candidates, bias=bias,
                       bias_group=bias_group)
    if to not in ("file", "kafka"):
        raise typer.BadParameter("--to must be file or kafka")
    target = str(settings.events_path)
    sink = None
    if to == "kafka":
        from ltr_pipeline.events.kafka import ensure_topic
        from ltr_pipeline.events.sink import KafkaSink

        ensure_topic(settings)
        sink = KafkaSink(settings)
        target = f"topic {settings.kafka_topic} at {settings.kafka_bootstrap_servers}"
    with progress("simulate") as step:
        total = simulate_days(config, first, days, settings.events_path, lambda _: live,
                              on_day=lambda d, n: step(f"simulated {d}: {n} events"),
                              **({"write": lambda events, _, __: sink.write(events)} if sink else {}))
        if sink:
            step("waiting for the broker to acknowledge every event")
            sink.close()
    summary = {"events": total, "days": days, "start": first.isoformat(), "to": target,
               "spooled": sink.spooled() if sink else 0, "ranked_by": live[1] or "legacy"}
    print_json(summary) if as_json else out.print(
        f"wrote {total} events for {days} days from {first} to {target} (ranked by {summary['ranked_by']})"
        + (f"; {summary['spooled']} spooled until the broker takes them" if summary["spooled"] else "")
    )


def _yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


@app.command()
def run(
    run_date: datetime | None = typer.Option(None, "--date", formats=["%Y-%m-%d"],
                                             help="The day to process (default: yesterday, UTC)."),
    home: Path | None = HomeOpt,
    registry: str | None = RegistryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run one daily cycle: ingest, train, evaluate, gate, publish or keep the champion. Exit 10 if rejected."""
    from ltr_pipeline.notify import notice_for_failure, notice_for_report, notify
    from ltr_pipeline.pipeline import run_daily

    settings = settings_from(home=home, registry=registry)
    _setup_logs(settings, "ltr_training.log")
    day = run_date.date() if run_date else _yesterday()
    try:
        with progress(f"daily run for {day}") as step:
            report = run_daily(day, settings, on_step=step)
    except Exception as exc:
        notify(settings, notice_for_failure(day, str(exc)))
        raise
    notify(settings, notice_for_report(report))
    if as_json:
        print_json(report)
    else:
        _print_run(report)
    if report.decision == "publish_failed":
        err.print(f"[red]error:[/red] publishing failed, the previous version stays live: {report.publish_error}")
        raise typer.Exit(RegistryError.exit_code)
    if report.decision == "rejected":
        raise typer.Exit(EXIT_REJECTED)


def _print_run(report: RunReport) -> None:
    _print_table(f"run {report.run_date}: {report.decision}", ("check", "value", "needs", "verdict"), [
        (c.name, _fmt(c.value, 4), f"{c.comparison} {c.threshold}",
         c.verdict + (" (shown, not deciding)" if not c.blocking and c.verdict != "pass" else ""))
        for c in report.gate.checks])
    out.print(", ".join(f"{role} nDCG@5 {_fmt(m.ndcg_at_5)}" for role, m in report.metrics.scorers().items())
              + " (logged)")
    d = report.metrics.debiased
    if d is not None and d.difference is not None:
        out.print(f"debiased nDCG@5, new - champion: {d.difference:+.4f} [{d.low:+.4f}, {d.high:+.4f}] "
                  f"over {d.queries} cases ({d.estimator})")
    out.print(f"published: {report.published_version or 'no (champion kept)'}; live: {report.live_version}; "
              f"outputs in {report.run_dir}")


def _registry(registry: str | None, home: Path | None) -> Any:
    from ltr_pipeline.registry import ModelRegistry

    return ModelRegistry.from_settings(settings_from(home=home, registry=registry))


def _nothing_published(uri: str) -> str:
    """Nothing published in `uri`, and where a demo or soak run from here did publish, if one did."""
    found = [p.parent for p in (Path("ltr-demo") / ".ltr-demo", Path("ltr-soak") / ".ltr-soak") if p.exists()]
    hint = "".join(f"; `ltr demo` or `ltr soak` published in {f}/: pass --home {f} or export LTR_HOME={f}"
                   for f in found if not Path(uri).resolve().is_relative_to(f.resolve()))
    return f"nothing published yet in {uri}{hint}"


@registry_app.command("list")
def registry_list(home: Path | None = HomeOpt, registry: str | None = RegistryOpt, as_json: bool = JsonOpt) -> None:
    """List published versions, oldest first, marking the live one and those the guard marked bad."""
    reg = _registry(registry, home)
    live, bad = reg.live_version(), reg.bad_versions()
    rows = []
    for version in reg.versions():
        meta = reg.show(version)
        rows.append({"version": version, "live": version == live, "created_at": meta.get("created_at"),
                     "run_date": meta.get("run_date"), NDCG_AT_5: headline(meta),
                     "bad": bad[version]["reason"] if version in bad else None})
    if as_json:
        print_json(rows)
        return
    if not rows:
        err.print(_nothing_published(reg.uri), highlight=False)
    _print_table(f"registry {reg.uri}", ("version", "live", "run date", "nDCG@5", "created at",
                                          "marked bad by the guard"), [
        (row["version"], "*" if row["live"] else "", row["run_date"] or "-", _fmt(row[NDCG_AT_5]),
         row["created_at"] or "-", row["bad"] or "") for row in rows])


def _version_name(value: str | None) -> str | None:
    """A version argument is checked as usage (exit 2), before anything is read."""
    from ltr_pipeline.registry import VERSION_RE

    if value is not None and not VERSION_RE.match(value):
        raise typer.BadParameter(f"{value!r} is not a version name (YYYYMMDD_HHMM, as `ltr registry list` shows)")
    return value


@registry_app.command("show")
def registry_show(version: str = typer.Argument(None, help="Version (default: the live one).",
                                                callback=_version_name),
                  home: Path | None = HomeOpt, registry: str | None = RegistryOpt) -> None:
    """Print a version's metadata as JSON."""
    reg = _registry(registry, home)
    version = version or reg.live_version()
    if version is None:
        raise VersionNotFound(_nothing_published(reg.uri))
    print_json(reg.show(version))


@registry_app.command("rollback")
def registry_rollback(version: str = typer.Argument(..., help="The version to make live.", callback=_version_name),
                      reason: str = typer.Option("", help="Why, for the audit log."),
                      home: Path | None = HomeOpt, registry: str | None = RegistryOpt,
                      as_json: bool = JsonOpt) -> None:
    """Make an earlier version live again (verified first). Services pick it up on their next poll."""
    reg = _registry(registry, home)
    previous = reg.live_version()
    reg.rollback(version, reason=reason)
    result = {"live_version": version, "previous": previous}
    print_json(result) if as_json else out.print(f"live version: {version} (was {previous})")


@registry_app.command("prune")
def registry_prune(keep: int = typer.Option(10, min=1, help="How many newest versions to keep."),
                   home: Path | None = HomeOpt, registry: str | None = RegistryOpt, as_json: bool = JsonOpt) -> None:
    """Delete all but the newest KEEP versions. The live version is never deleted."""
    deleted = _registry(registry, home).prune(keep)
    print_json({"deleted": deleted}) if as_json else out.print(f"deleted {len(deleted)} version(s): {deleted}")


@registry_app.command("audit")
def registry_audit(home: Path | None = HomeOpt, registry: str | None = RegistryOpt) -> None:
    """Print the audit log (publishes, rollbacks, prunes) as JSON."""
    print_json(_registry(registry, home).audit_log())


@app.command("import")
def import_(
    train: Path = typer.Argument(..., exists=True, dir_okay=False, help="svmlight/LETOR training file."),
    test: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Test file: becomes the holdout."),
    out: Path = typer.Option(Path("letor"), help="Folder for the events and the settings file."),
    as_json: bool = JsonOpt,
) -> None:
    """Import svmlight/LETOR files (qid: or a .query file) as events; writes <out>/ltr.env with the settings."""
    from ltr_pipeline.letor import import_letor

    summary = import_letor(train, out, test=test)
    print_json(summary)
    if not as_json:
        err.print(f"then: set -a; . {summary['env_file']}; set +a; ltr run --date {summary['run_date']}")


@app.command()
def report(
    service: str | None = typer.Option(None, help="Base URL of a running service, to add its live state."),
    home: Path | None = HomeOpt,
    registry: str | None = RegistryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Build $LTR_HOME/history.html over every run and version, with the seed's success criteria."""
    import httpx

    from ltr_pipeline.report import write_history

    settings = settings_from(home=home, registry=registry)
    state = None
    if service:
        try:
            health = httpx.get(f"{service.rstrip('/')}/ltr/health", timeout=5).json()
            state = {"model_version": health["model_version"], **health.get("service_metrics", {})}
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise LtrError(f"cannot read the service at {service}: {exc}") from exc
    path, criteria = write_history(settings, state)
    if as_json:
        print_json({"path": str(path), "criteria": criteria})
        return
    _print_criteria(criteria)
    out.print(f"history page: {path}")


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Bind address ($LTR_HOST)."),
    port: int | None = typer.Option(None, help="Port ($LTR_PORT)."),
    poll_seconds: float | None = typer.Option(None, help="Registry poll interval ($LTR_POLL_SECONDS)."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes ($LTR_WORKERS); each polls and "
                                       "reloads on its own, metrics are merged across them."),
    home: Path | None = HomeOpt,
    registry: str | None = RegistryOpt,
) -> None:
    """Serve rankings over HTTP, hot-reloading new versions from the registry."""
    import os

    import uvicorn

    # The service never wants OpenMP's thread pool: it predicts on one thread, and LightGBM's parallel model parsing
    # would otherwise busy a thread on every core during each reload, for twice the CPU time and no quicker load
    # (measured). OpenMP reads this when LightGBM loads, so it is set before anything imports LightGBM.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from ltr_pipeline.service.app import create_app

    settings = settings_from(home=home, registry=registry, host=host, port=port, poll_seconds=poll_seconds,
                             workers=workers)
    err.print(f"ltr serve: http://{settings.host}:{settings.port} ({settings.workers} worker(s); registry "
              f"{settings.registry}; API docs at /docs, history page at /ltr/dashboard)", highlight=False)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                    access_log=False)
        return
    # Each worker builds its app from the environment: hand the options down, and give prometheus-client a
    # fresh folder for its per-process files (multiprocess mode, see service/metrics.py).
    import shutil

    given = {"LTR_HOME": home, "LTR_REGISTRY_URI": registry, "LTR_POLL_SECONDS": poll_seconds}
    os.environ.update({name: str(value) for name, value in given.items() if value is not None})
    shared = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.home / "prometheus")))
    shutil.rmtree(shared, ignore_errors=True)
    shared.mkdir(parents=True)
    uvicorn.run("ltr_pipeline.service.app:create_app", factory=True, workers=settings.workers, host=settings.host,
                port=settings.port, log_level="warning", access_log=False)


@app.command()
def demo(
    home: Path = typer.Option(Path("ltr-demo"), "--home", help="Folder for the demo (created; must be new or "
                              "a previous demo's)."),
    history_days: int = typer.Option(21, min=3, help="Days simulated before the first run."),
    days: int = typer.Option(7, min=1, help="Daily cycles to run."),
    as_json: bool = JsonOpt,
) -> None:
    """Simulate weeks of a marketplace, run the daily loop with a live service, print a table per day."""
    from ltr_pipeline.demo import run_demo

    settings = _fresh_home(home, ".ltr-demo")
    _setup_logs(settings, "demo.log")
    rows: list[dict[str, Any]] = []
    if not as_json:
        out.print(DEMO_HEADER, highlight=False)

    def add_row(day: Any) -> None:  # one line per day as it ends: in a terminal, a pipe and a log alike
        r: RunReport = day.report
        m = r.metrics
        row = {"run_date": str(day.run_date), "samples": r.data.samples,
               "ndcg5_new": m.new.ndcg_at_5, "ndcg5_champion": m.champion.ndcg_at_5 if m.champion else None,
               "ndcg5_legacy": m.legacy.ndcg_at_5,
               "debiased_difference": m.debiased.difference if m.debiased else None,
               "fairness_gap": m.new.fairness_gap,
               "p95_ms": m.new.latency_p95_ms, "decision": r.decision, "live_version": day.live_version,
               "requests": day.requests, "fallbacks": day.fallbacks}
        rows.append(row)
        if not as_json:
            out.print(_demo_line(row), highlight=False)

    with progress("demo") as step:
        run_demo(settings, history_days=history_days, days=days, on_progress=step, on_day=add_row)
    from ltr_pipeline.report import write_history

    history, _ = write_history(settings)
    if as_json:
        print_json(rows)
        return
    ltr = sys.argv[0] if sys.argv[0].endswith("/ltr") else "ltr"  # as called: .venv/bin/ltr after `make demo`
    out.print(f"\nruns, registry and logs are in {home}/; the history page is {history}\nnext:\n"
              f"  export LTR_HOME={home}\n"
              f"  {ltr} registry list    # the versions the demo published\n"
              f"  {ltr} report           # rebuild the history page\n"
              f"  {ltr} serve            # the ranking service on http://127.0.0.1:8080 (/docs, /ltr/dashboard)",
              highlight=False)


DEMO_HEADER = (f"{'run date':<10} {'samples':>7} {'nDCG@5':>6} {'champ':>6} {'legacy':>6} {'Δ debi':>6} "
               f"{'p95 ms':>6} {'decision':<9} {'live version':<14}")  # 80 columns


def _demo_line(row: dict[str, Any]) -> str:
    def num(key: str, digits: int = 3) -> str:
        value = row[key]
        return "-" if value is None else f"{value:+.{digits}f}" if key == "debiased_difference" else \
            f"{value:.{digits}f}"

    return (f"{row['run_date']:<10} {row['samples']:>7} {num('ndcg5_new'):>6} {num('ndcg5_champion'):>6} "
            f"{num('ndcg5_legacy'):>6} {num('debiased_difference'):>6} {num('p95_ms'):>6} "
            f"{row['decision'][:9]:<9} {row['live_version'] or '-':<14}")


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """What a long command is doing: Rich's spinner on stderr in a terminal, plain lines on stderr otherwise (CI,
    Airflow logs, a pipe), so stdout keeps only the results."""
    if err.is_terminal:
        with err.status(title) as status:
            yield status.update
    else:
        yield lambda text: err.print(f"{title}: {text}", highlight=False)


@app.command()
def compare(
    a: str = typer.Argument(..., help="Version A, typically the live one: the window's drift is measured against "
                            "its training data.", callback=_version_name),
    b: str = typer.Argument(..., help="Version B, typically a candidate.", callback=_version_name),
    run_date: datetime | None = typer.Option(None, "--date", formats=["%Y-%m-%d"],
                                             help="The run whose holdout both score (default: the newest)."),
    home: Path | None = HomeOpt,
    registry: str | None = RegistryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Two versions side by side on one run's holdout (bootstrap intervals of each difference), their latency,
    weights, parameters and data, and the window's drift against A's training data; writes an HTML page."""
    from ltr_pipeline.compare import compare_versions, write_comparison

    settings = settings_from(home=home, registry=registry)
    result = compare_versions(settings, a, b, run_date.date() if run_date else None)
    path = write_comparison(settings, result)
    if as_json:
        print_json({"page": str(path), "run_date": result.run_date, "cases": result.cases,
                    "metrics": result.metrics, "drift": result.drift, "label_drift": result.label_drift})
        return
    _print_table(f"{a} (A) against {b} (B) on the holdout of {result.run_date} ({result.cases} cases)",
                 ("metric", "A", "B", "B - A", "95% interval", "reading"), [
        (m.name, _fmt(m.a, 4), _fmt(m.b, 4), f"{m.difference:+.4f}", f"[{m.low:+.4f}, {m.high:+.4f}]", m.verdict)
        for m in result.metrics])
    drifted = [d.name for d in result.drift if d.flagged]
    out.print(f"drift against {a}'s training data: " + (", ".join(drifted) if drifted else "none past "
                                                         f"{result.psi_limit:g}") + f"; page: {path}")


@app.command()
def guard(
    every: float | None = typer.Option(None, min=1.0, help="Check again every this many seconds, until stopped "
                                       "(default: one check)."),
    home: Path | None = HomeOpt,
    registry: str | None = RegistryOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check the live version against the one before it (fallbacks, feature drift, engagement); roll it back when a
    check fails. Exit 12 when it did."""
    import time

    from ltr_pipeline.guard import Guard

    settings = settings_from(home=home, registry=registry)
    _setup_logs(settings, "guard.log")
    watch = Guard(settings)
    while True:
        report = watch.check()
        if as_json:
            print_json(report)
        else:
            _print_table(f"guard: {report.version or 'no live version'} ({report.cases} cases since "
                         f"{report.live_since or '-'}, against {report.previous or '-'})",
                         ("check", "value", "limit", "verdict", "detail"),
                         [(c.name, _fmt(c.value, 4), _fmt(c.threshold, 4), c.verdict, c.detail) for c in report.checks])
            out.print(f"action: {report.action}" + (f" (now live: {report.rolled_back_to})"
                                                    if report.rolled_back_to else ""))
        if every is None:
            if report.action in ("rolled_back", "flagged"):
                raise typer.Exit(EXIT_GUARD_ACTED)
            return
        time.sleep(every)


@app.command()
def soak(
    home: Path = typer.Option(Path("ltr-soak"), "--home", help="Folder for the soak (created; must be new or a "
                              "previous soak's)."),
    days: int = typer.Option(30, min=6, help="Daily cycles to run."),
    history_days: int = typer.Option(21, min=3, help="Legacy days simulated before the first run."),
    cases_per_day: int = typer.Option(300, min=50, help="Cases per simulated day."),
    faults: bool = typer.Option(True, help="Inject the five faults (--no-faults: a healthy run)."),
    as_json: bool = JsonOpt,
) -> None:
    """Run DAYS daily cycles with the service and its guard live, injecting a broker outage, a registry outage
    during publish, malformed events, a skewed model and a service restart; print what the system did and the five
    success criteria. Exit 11 if one is not met."""
    from ltr_pipeline.report import write_history
    from ltr_pipeline.soak import quality, run_soak, service_state

    settings = _fresh_home(home, ".ltr-soak")
    _setup_logs(settings, "soak.log")
    def show_day(day: Any) -> None:  # one line per day as it ends, on stderr (stdout stays pure with --json)
        err.print(f"{day.run_date}  {day.decision:<15} live {day.live_version or '-':<14} "
                  f"{(day.fault or '') + (': ' + day.did if day.fault or day.guard else '')}")

    with progress("soak") as step:
        soaked, totals = run_soak(settings, days=days, history_days=history_days, cases_per_day=cases_per_day,
                                  faults=faults, on_progress=step, on_day=show_day)
    service = service_state(totals)
    path, criteria = write_history(settings, service, quality(soaked, totals))
    if as_json:
        print_json({"days": soaked, "criteria": criteria, "history": str(path), "service": service,
                    "legacy_truth_ndcg5": totals["legacy_truth_ndcg5"]})
    else:
        _print_table("faults: what the system did", ("run date", "fault", "what the system did", "time to recover"),
                     [(str(d.run_date), d.fault or "-", d.did, d.recovery) for d in soaked if d.fault or d.guard])
        _print_criteria(criteria)
        out.print(f"history page: {path}")
    if any(c["status"] != "met" for c in criteria):
        raise typer.Exit(EXIT_CRITERIA_NOT_MET)


def _fresh_home(home: Path, marker_name: str) -> Settings:
    """`home` emptied for a demo or soak (refused if it holds anything else), as the settings' home."""
    import shutil

    marker = home / marker_name
    if home.exists() and not home.is_dir():
        raise typer.BadParameter(f"{home} is a file, not a folder", param_hint="--home")
    if home.exists() and any(home.iterdir()) and not marker.exists():
        raise typer.BadParameter(f"{home} is not empty and not a previous {marker_name[5:]} folder: pass a new "
                                 "one", param_hint="--home")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    marker.touch()
    return Settings(home=home, registry_uri=None, events_dir=None, log_dir=None)


def _print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _print_criteria(criteria: list[dict[str, Any]]) -> None:
    _print_table("success criteria", ("criterion", "figure", "status"),
                 [(c["criterion"], c["figure"], c["status"]) for c in criteria])


def _setting_errors(exc: ValidationError) -> str:
    """One line per invalid setting, named as the user set it: its variable (or the flag that set it)."""
    fields = Settings.model_fields
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = fields.get(name)
        alias = field.validation_alias if field is not None else None
        variable = getattr(alias, "choices", [alias])[0] if alias else f"LTR_{name.upper()}"
        lines.append(f"{variable}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(lines)


def main() -> None:
    from ltr_pipeline.errors import ConfigError
    from ltr_pipeline.logs import configure_logging

    configure_logging(stream=sys.stderr, level=logging.WARNING)  # stdout is for results; commands may log more
    try:
        app()
    except LtrError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid setting: {_setting_errors(exc)}", highlight=False)
        sys.exit(ConfigError.exit_code)
    except Exception as exc:
        if DEBUG:
            raise
        err.print(f"[red]error:[/red] {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                  highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
