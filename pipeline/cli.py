"""`python -m pipeline`: run the pipeline or one stage; user errors exit 2 with one line on stderr."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, get_args

from featuremap.errors import InputError
from methods import METHODS
from pipeline.config import STAGE_ORDER, ModelName, load_config
from pipeline.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        raise UserError(f"{self.prog}: {message}")


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config file")
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        help="input file or directory (default: built-in synthetic data); repeat it to read several (e.g. a window of dated partitions) as one",
    )
    parser.add_argument("--format", help="criteo, csv, libsvm or parquet (default: from the file name)")
    parser.add_argument("--label", help="label column")
    parser.add_argument("--positive", help="label value that means a click, for a text label (data.positive)")
    parser.add_argument("--separator", help="CSV column separator, one character or 'tab' (default: from the header)")
    parser.add_argument("--out", type=Path, help="output directory (default runs/latest)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite ./mlflow.db)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag every MLflow run of this run (repeatable)")
    parser.add_argument("--rows", type=int, help="rows of synthetic data when no --data is given")
    parser.add_argument("--model", help=f"model for the train stage: {', '.join(get_args(ModelName))}")
    parser.add_argument("--device", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument(
        "--engine", choices=["local", "ray"], help="where ingest and rank run: here, or as Ray tasks (engine.kind; default local)"
    )
    parser.add_argument("--ray-address", help="the Ray cluster for --engine ray (engine.address; default: start a local one)")
    parser.add_argument(
        "--search", help=f"comma-separated search methods (default: encodings; none for no search): {', '.join([*METHODS, 'optuna'])}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _Parser(prog="python -m pipeline", description="CTR feature engineering and model search pipeline")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the pipeline's stages")
    _data_flags(run)
    run.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGE_ORDER)}")
    run.add_argument("--force", action="store_true", help="rerun every stage, even those whose inputs, settings and code are unchanged")
    for stage in STAGE_ORDER:
        one = sub.add_parser(
            stage, help=f"run the {stage} stage (and the stages before it when --data is given; unchanged ones are reused)"
        )
        _data_flags(one)
        one.add_argument("--force", action="store_true", help="rerun even when inputs, settings and code are unchanged")
    pred = sub.add_parser("predict", help="score a raw file with a trained model")
    pred.add_argument("--model", required=True, help="a run's output directory, runs:/<run id> or models:/<name>/<version>")
    pred.add_argument("--data", type=Path, required=True, help="raw file to score, in the training data's format")
    pred.add_argument("--format", help="criteo, csv, libsvm or parquet (default: the training run's, else from the file name)")
    pred.add_argument("--out", type=Path, required=True, help="predictions file (.parquet, or .csv)")
    pred.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    pred.add_argument(
        "--keep", type=_names, default=[], help="input columns to copy into the predictions, comma-separated (e.g. a request id)"
    )
    pred.add_argument("--tracking-uri", help="MLflow tracking URI for runs:/ and models:/ references")
    dash = sub.add_parser("dashboard", help="serve the Optuna dashboard on a run's study")
    dash.add_argument("--storage", type=Path, required=True, help="a run's output directory or its study.db")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8080)
    gen = sub.add_parser("generate", help="write the synthetic dataset as parquet shards")
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--kind", choices=["planted", "longtail"], default="planted", help="which synthetic data (data/README.md)")
    gen.add_argument("--part", type=int, default=0, help="planted data: another sample of the same effects (e.g. one per day's partition)")
    gen.add_argument("--out", type=Path, required=True)
    return parser


def _names(text: str) -> list[str]:
    """A comma-separated list of column names (blanks dropped)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if getattr(args, "positive", None) is not None:
        data["positive"] = [args.positive]
    for key in ("data", "format", "label", "separator"):
        value = getattr(args, key, None)
        if value is not None:
            data["path" if key == "data" else key] = [str(v) for v in value] if key == "data" else value
    if args.rows is not None:
        data["synthetic_rows"] = args.rows
    over: dict[str, Any] = {"data": data} if data else {}
    if args.out is not None:
        over["out"] = str(args.out)
    train = {k: v for k, v in (("model", args.model), ("device", args.device)) if v is not None}
    if train:
        over["train"] = train
    engine = {k: v for k, v in (("kind", args.engine), ("address", args.ray_address)) if v is not None}
    if engine:
        over["engine"] = engine
    if args.search:  # the methods exactly (the default, encodings, only when listed); "none" for no search
        over["search"] = {"methods": [m.strip() for m in args.search.split(",") if m.strip() and m.strip() != "none"]}
    tracking: dict[str, Any] = {}
    if args.tracking_uri:
        tracking["uri"] = args.tracking_uri
    if args.no_tracking:
        tracking["enabled"] = False
    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--tag {item!r}: expected KEY=VALUE")
        tags[key.strip()] = value
    if tags:
        tracking["tags"] = tags
    if tracking:
        over["tracking"] = tracking
    if args.command == "run" and args.stages:
        over["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    elif args.command in STAGE_ORDER:
        upto = STAGE_ORDER[: STAGE_ORDER.index(args.command) + 1]
        over["stages"] = list(upto) if args.data is not None or args.command == "ingest" else [args.command]
    return over


def _generate(args: argparse.Namespace) -> int:
    """Write the shards into a hidden folder beside OUT and move them in when all are written: an interrupted or
    failed run leaves no shard in OUT, and shards of an earlier run are never mixed with new ones."""
    import shutil
    import tempfile

    from features.synthetic import write_parquet_shards

    if args.rows < 1:
        raise UserError("--rows must be at least 1")
    if args.seed < 0:
        raise UserError("--seed must be 0 or more")
    if args.part < 0 or (args.part and args.kind != "planted"):
        raise UserError("--part must be 0 or more, and is for --kind planted only")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; give --out a directory for the shards")
    if out.is_dir() and any(out.glob("part-*.parquet")):
        raise UserError(f"{out}: already holds parquet shards; give an empty or new directory (new shards would mix with them)")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise UserError(f"{out}: cannot write the shards there ({exc.strerror or exc})") from exc
    try:
        paths = write_parquet_shards(work, args.rows, args.seed, kind=args.kind, part=args.part)
        for path in paths:
            path.replace(out / path.name)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.rows:,} rows in {len(paths)} parquet shard(s) to {out}", file=sys.stderr)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from pipeline.package import Scoring, find_package
    from pipeline.predictions import check_csv_columns, check_writable, write_predictions

    if args.out.exists() and args.out.is_dir():
        raise UserError(f"{args.out}: is a directory; give a file name for the predictions")
    if args.out.suffix.lower() not in (".parquet", ".csv"):
        raise UserError(f"{args.out}: give the predictions file a .parquet or .csv name")
    if args.out.exists() and args.data.exists() and args.out.resolve() == args.data.resolve():
        raise UserError(f"{args.out}: is the input file; give the predictions another name")
    check_writable(args.out)  # before scoring, not after it
    package = find_package(args.model, args.tracking_uri)
    scoring = Scoring(package, args.data, args.format, args.device, keep=tuple(args.keep))
    check_csv_columns(scoring.kept_types, args.out)
    write_predictions(scoring, args.out)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in scoring.metrics.items() if k in ("auc", "logloss", "oov_share_max"))
    print(f"predict: {shown}", file=sys.stderr)
    return 0


# Config keys the lower layers name in their errors, and the flags that set them here.
FLAGS = {
    "data.path": "--data",
    "data.format": "--format",
    "data.separator": "--separator",
    "data.label": "--label",
    "data.positive": "--positive",
}


def with_flags(message: str) -> str:
    """`message` with the flag beside each config key it names (once each), for a user at the command line."""
    for key, flag in FLAGS.items():
        message = re.sub(rf"\b{re.escape(key)}\b(?! \()", f"{key} ({flag})", message, count=1)
    return message


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "generate":
            return _generate(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "dashboard":
            from pipeline.study import serve_dashboard

            return serve_dashboard(args.storage, args.host, args.port)
        cfg = load_config(args.config, _overrides(args))  # before the runner's imports: a config error answers at once
        from pipeline.runner import run_pipeline

        run_pipeline(cfg, force=args.force)
        print(f"outputs: {cfg.out.resolve()}", file=sys.stderr)
        return 0
    except InputError as exc:  # ours (UserError) and the lower layers' own
        print(f"error: {exc if isinstance(exc, UserError) else with_flags(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
