"""The verbs. Each parses its flags into the one config, calls a recipe, and prints. Errors a user can act on
are printed once here, as `tunesmith: ...` with exit code 2, never as a traceback.

Each command imports what it uses inside itself, for start-up time: `tunesmith --help`, `--version` and a
mistyped flag answer at once instead of loading pydantic, torch and transformers first."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tunesmith.errors import Interrupted, UserError, WriteFailed
from tunesmith.quiet import quiet_libraries

app = typer.Typer(
    help="Fine-tune a pretrained transformer on your own data, evaluate it against the base model, predict.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
LOG_WIDTH = 1000
"""Line width when the output is not a terminal (make, CI logs, `> file`): tables take the width they need
instead of rich's 80 columns, which cut cells to "…". COLUMNS in the environment still sets it."""


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty() or "COLUMNS" in os.environ
    return Console(stderr=stderr, width=None if terminal else LOG_WIDTH)


console = make_console()


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"tunesmith {version('tunesmith')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    """Fine-tune a pretrained transformer on your own data, evaluate it against the base model, predict."""


METHOD_HELP = (
    "full, freeze, lora, dora, adalora, loha, lokr, ia3, prompt, prefix, adapter or qlora "
    "(see `tunesmith plan` for what each costs) [default: lora]"
)


# The options `train` and `plan` share (one run config from a YAML file, flags and dotted overrides).
Overrides = Annotated[
    list[str] | None, typer.Argument(help="Dotted overrides: train.epochs=5 method.rank=16")
]
ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", help="YAML run config")]
TaskName = Annotated[
    str | None,
    typer.Option(
        help="classification, multilabel, regression, tokens, chat, summarization, qa, preference or embedding [default: classification]"
    ),
]
ModelName = Annotated[
    str | None,
    typer.Option(
        help="Catalog name (see `tunesmith models`), local folder or hub id [default: the task's own: minilm "
        "for classification, qa and embedding, smollm2-135m-instruct for chat, summarization and preference]"
    ),
]
TrainFile = Annotated[Path | None, typer.Option(help="Training file: CSV, JSONL or Parquet")]
ValidationFile = Annotated[Path | None, typer.Option(help="Validation file (else split off --data)")]
TestFile = Annotated[Path | None, typer.Option(help="Test file (else split off --data)")]


def _config_from(
    tree: dict[str, Any], overrides: list[str] | None, plugins: dict[str, str | None], flags: dict[str, Any]
) -> Any:
    """The run config: YAML tree, then flags (a plugin flag naming another plugin starts its section
    afresh), then dotted overrides."""
    from tunesmith.config import build_config

    for section, name in plugins.items():
        if name is not None:
            current = tree.get(section)
            current_name = current.get("name") if isinstance(current, dict) else current
            if current_name != name:
                tree[section] = {"name": name}
    dotted = [f"{key}={json.dumps(str(value))}" for key, value in flags.items() if value is not None]
    return build_config(tree, [*dotted, *(overrides or [])])


def _model_and_data(
    model: str | None, train: Path | None, validation: Path | None, test: Path | None
) -> dict[str, Any]:
    """The flags check, train and plan share, as dotted config keys."""
    return {"model.name": model, "data.train": train, "data.validation": validation, "data.test": test}


@app.command()
def check(
    file: Annotated[Path | None, typer.Argument(help="Training file (or data.train from --config)")] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides: check.min_words=3 model.max_length=256")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML run config")] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="classification, multilabel, regression, tokens, chat, summarization, qa, preference or embedding"
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model whose tokenizer and max_length to measure with")
    ] = None,
    validation: Annotated[Path | None, typer.Option(help="Validation file")] = None,
    test: Annotated[Path | None, typer.Option(help="Test file")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 on warnings (errors always exit 2)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Check data before training: every bad line (exit 2), then duplicates, leakage across splits,
    labels, lengths in the model's tokens, short examples, personal data and narrowness (warnings).
    `train` runs the same check first and refuses to start on errors."""
    from tunesmith.config import read_yaml
    from tunesmith.data.checks.render import print_report
    from tunesmith.recipes.check import check_run_data

    quiet_libraries()
    if file is not None and "=" in file.name and not file.exists():  # `check -c run.yaml key=value`
        overrides, file = [str(file), *(overrides or [])], None
    tree = read_yaml(config) if config else {}
    if strict:
        overrides = [*(overrides or []), "check.strict=true"]
    run_config = _config_from(
        tree,
        overrides,
        {"task": task},
        _model_and_data(model, file, validation, test),
    )
    report = check_run_data(run_config).report
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(console, report)
    if not report.ok:
        raise typer.Exit(2)
    if run_config.check.strict and report.warnings:
        raise typer.Exit(1)


@app.command()
def train(
    overrides: Overrides = None,
    config: ConfigFile = None,
    task: TaskName = None,
    model: ModelName = None,
    data: TrainFile = None,
    validation: ValidationFile = None,
    test: TestFile = None,
    method: Annotated[str | None, typer.Option(help=METHOD_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder to create")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder at --out")] = False,
    memory_budget: Annotated[
        str | None, typer.Option(help="Refuse to start over this estimated peak memory, e.g. 8GB")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    nproc: Annotated[
        int, typer.Option(min=1, help="Processes per machine (torchrun; DDP over gloo on CPU, NCCL on GPUs)")
    ] = 1,
    nnodes: Annotated[int, typer.Option(min=1, help="Machines in a multi-node run")] = 1,
    node_rank: Annotated[int, typer.Option(min=0, help="This machine's index, 0 to nnodes-1")] = 0,
    master_addr: Annotated[str | None, typer.Option(help="Address of machine 0 (multi-node)")] = None,
    master_port: Annotated[int, typer.Option(help="Port on machine 0 (multi-node)")] = 29500,
) -> None:
    """Fine-tune a model; prints base vs tuned on the test split and where the run folder is.

    With nothing else set: 3 epochs (train.epochs), batch 16 (train.batch_size), the learning rate measured
    for the method and task (lora: 2e-3 for classification, 5e-4 for the others; train.learning_rate),
    model.max_length from the data (99% of training examples whole), and the run keeps the base model when
    tuning did not beat it (train.keep). The run folder's config.yaml records every value used."""
    from tunesmith.recipes.finetune import finetune
    from tunesmith.training.distributed import is_main_process, launched
    from tunesmith.training.launch import launch

    quiet_libraries()
    given = bool(config or overrides) or any(
        v is not None for v in (task, model, data, validation, test, method)
    )
    run_config = _config_from(
        _run_tree(config, out, resume, given),
        overrides,
        {"task": task, "method": method},
        {
            **_model_and_data(model, data, validation, test),
            "output_dir": out,
            "train.memory_budget": memory_budget,
        },
    )
    if (nproc > 1 or nnodes > 1) and not launched():  # torchrun starts this command again in each process
        raise typer.Exit(launch(run_config, sys.argv[1:], nproc, nnodes, node_rank, master_addr, master_port))
    result = finetune(
        run_config, make_console(stderr=True) if as_json else console, resume=resume, overwrite=overwrite
    )
    if is_main_process():
        _print_trained(result, as_json)


def _run_tree(config: Path | None, out: Path | None, resume: bool, given: bool) -> dict[str, Any]:
    """The config to start from: a resumed run's own (nothing else may be given), or the --config file."""
    from tunesmith.config import read_yaml

    if not resume:
        return read_yaml(config) if config else {}
    if out is None:
        raise UserError("--resume needs --out RUN_FOLDER")
    if given:
        raise UserError("--resume continues with the run's saved config; give only --out")
    return read_yaml(out / "config.yaml") if (out / "config.yaml").is_file() else {}


def _print_trained(result: Any, as_json: bool) -> None:
    """A finished run: its summary and evaluation as JSON, or the comparison table and what to do next."""
    from tunesmith.evaluation.report import print_comparison

    if as_json:
        summary = {"run": str(result.run), "summary": result.summary, "evaluation": result.evaluation}
        print(json.dumps(summary, indent=2))
        return
    if result.evaluation:
        print_comparison(console, result.evaluation, "test set: base vs tuned")
    console.print(f"run folder: [bold]{result.run}[/]")
    console.print(
        f'next: tunesmith predict {result.run} "some text"   |   tunesmith eval {result.run} --data FILE'
    )


@app.command()
def mine(
    file: Annotated[Path, typer.Argument(help="Retrieval pairs (anchor, positive)")],
    out: Annotated[Path, typer.Option(help="Triplets file to write (JSONL: anchor, positive, negative)")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides: task.anchor_column=question")
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(help="Documents (id, text) to find negatives in (default: the pairs' positives)"),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="The base model that ranks the documents [default: minilm]")
    ] = None,
    margin: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Skip documents scoring above (1 - margin) x the positive's own similarity: likely right "
            "answers too",
        ),
    ] = 0.05,
) -> None:
    """Find a hard negative for each retrieval pair with the base model, and write triplets for `train`."""
    from tunesmith.recipes.mine import mine as mine_pairs

    quiet_libraries()
    config = _config_from({}, overrides, {"task": "embedding"}, {"model.name": model, "data.train": file})
    mined = mine_pairs(config, out, corpus, margin)
    console.print(
        f"{out}: {mined.written} triplets; mean similarity to the anchor: positive {mined.positive_similarity:.3f}, "
        f"negative {mined.negative_similarity:.3f}; {mined.skipped_close} documents skipped as likely right "
        f"answers (margin {margin}); {mined.without_negative} pairs without a negative, left out"
    )


@app.command("eval")
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder")],
    data: Annotated[Path, typer.Option(help="Labelled test file (same columns as training)")],
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Embedding runs: documents (id, text) each query searches; --data then holds pairs, or "
            "queries with the ids of their relevant documents (query, relevant)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
) -> None:
    """Evaluate a run on a labelled file: the tuned model and the base model side by side."""
    from tunesmith.data.readers import FileFormat
    from tunesmith.evaluation.report import print_comparison
    from tunesmith.inference import load_run
    from tunesmith.recipes.evaluate import evaluate_examples

    quiet_libraries()
    trained = load_run(run)
    if corpus is not None and (note := trained.task.use_corpus(corpus)):
        make_console(stderr=True).print(f"note: {note}")
    examples = trained.task.read(data, FileFormat(trained.config.data.format, trained.config.data.delimiter))
    trained.task.check(examples)
    report = evaluate_examples(trained, examples)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_comparison(console, report, f"{data.name}: base vs tuned")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default: RUN/report.html)")] = None,
) -> None:
    """One self-contained HTML page about a run: base vs tuned, curves, confusion matrix or example outputs,
    forgetting, resources, data check and config."""
    from tunesmith.reporting.run_report import write_report

    console.print(f"written: {write_report(run, out)}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders")],
    html: Annotated[
        Path | None, typer.Option(help="Also write the table as a self-contained HTML page")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON")] = False,
) -> None:
    """Runs side by side: test metrics and their gain over the base model, method, trainable parameters,
    forgetting, time and memory, from what each run folder recorded."""
    from tunesmith.recipes.compare import compare_runs, comparison_html, print_comparison_table

    rows = compare_runs(runs)
    if html is not None:
        from tunesmith.files import write_text_atomic

        html.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(html, comparison_html(rows), "the comparison page")
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_comparison_table(console, rows)
    if html is not None:
        console.print(f"written: {html}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder")],
    texts: Annotated[
        list[str] | None,
        typer.Argument(
            help="Texts (to classify, answer or summarize); none (or -) reads stdin, one per line"
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="A .txt file (one text per line) or CSV/JSONL/Parquet with the text column"),
    ] = None,
    top: Annotated[
        int, typer.Option(help="Probabilities (or documents, with --corpus) to show per text")
    ] = 3,
    corpus: Annotated[
        Path | None, typer.Option(help="Embedding runs: the documents (id, text) to search for each text")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Predict labels (classification), generate answers (chat, summarization, QA) or embed texts and find
    their nearest documents (embedding), batched."""
    from tunesmith.inference import load_run
    from tunesmith.recipes.predict import predictions

    quiet_libraries()
    trained = load_run(run)
    if corpus is not None and (note := trained.task.use_corpus(corpus)):
        make_console(stderr=True).print(f"note: {note}")
    for row in predictions(trained, texts, file, sys.stdin):
        print(json.dumps(row) if as_json else trained.task.prediction_line(row, top))


@app.command()
def chat(
    run: Annotated[Path, typer.Argument(help="Run folder of a chat (or other text-writing) run")],
    system: Annotated[
        str | None, typer.Option(help="A system message to start the conversation with")
    ] = None,
) -> None:
    """Talk to a tuned model: each line you type is a user turn, the reply is printed, and the conversation
    carries on. The prompt is rendered with the run's own chat template, exactly as in training.
    /reset starts over; an empty line, /quit or Ctrl-D ends. Lines piped into stdin work too."""
    from tunesmith.inference import load_run

    quiet_libraries()
    trained = load_run(run)
    task = trained.task
    if not task.converses:
        raise UserError(
            f"{run} is a {task.name} run on a model without a chat template; `chat` needs a decoder run"
        )
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(f"[dim]chatting with {run} ({trained.config.model.name}); /reset, /quit[/]")
    while True:
        if interactive:
            console.print("[bold]you>[/] ", end="")
        line = sys.stdin.readline()
        text = line.strip()
        if not line or text in ("/quit", "/exit") or (interactive and not text):
            break
        if not text:
            continue
        if text == "/reset":
            messages = list(start)
            continue
        messages.append({"role": "user", "content": text})
        reply = task.answer(trained.model, messages, trained.pad_id)
        messages.append({"role": "assistant", "content": reply})
        if interactive:
            console.print(f"[bold green]bot>[/] {escape(reply)}")
        else:
            print(reply, flush=True)


@app.command()
def tune(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides: search.pruning=false train.epochs=4")
    ] = None,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="YAML run config with a search section")
    ] = ...,
    trials: Annotated[int | None, typer.Option(help="Finished trials to reach (search.trials)")] = None,
    metric: Annotated[
        str | None, typer.Option(help="Validation metric to optimise (search.metric; default train.metric)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Search folder (default: OUTPUT_DIR-search)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Hyperparameter search (Optuna TPE, median pruning on each epoch's validation metric) over the config's
    search.space; resumable; the best config is written as best.yaml for `tunesmith train`."""
    from tunesmith.config import read_yaml
    from tunesmith.recipes.tune import tune as run_search

    quiet_libraries()
    run_config = _config_from(
        read_yaml(config), overrides, {}, {"search.trials": trials, "search.metric": metric}
    )
    result = run_search(run_config, console if not as_json else make_console(stderr=True), out)
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        result.print(console)


@app.command()
def plan(
    overrides: Overrides = None,
    config: ConfigFile = None,
    task: TaskName = None,
    model: ModelName = None,
    data: TrainFile = None,
    validation: ValidationFile = None,
    test: TestFile = None,
    method: Annotated[
        str, typer.Option(help="all, or method names separated by commas (e.g. lora,qlora,full)")
    ] = "all",
    memory_budget: Annotated[
        str | None, typer.Option(help="Recommend the best method that fits, e.g. 8GB or 1.5GiB")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON")] = False,
) -> None:
    """Before training: each method's trainable parameters, peak memory and time per epoch on this machine,
    measured on a short calibration with your model and data; and the method to use."""
    from tunesmith.config import read_yaml
    from tunesmith.methods import METHODS
    from tunesmith.recipes.plan import plan as make_plan
    from tunesmith.recipes.plan import print_plan

    quiet_libraries()
    names = METHODS.names() if method == "all" else [m.strip() for m in method.split(",") if m.strip()]
    for name in names:
        METHODS.get(name)  # an unknown name fails here, listing the valid ones
    run_config = _config_from(
        read_yaml(config) if config else {},
        overrides,
        {"task": task},
        _model_and_data(model, data, validation, test),
    )

    err = make_console(stderr=True)
    with err.status("calibrating") as status:
        result = make_plan(run_config, names, memory_budget, lambda text: status.update(text))
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print_plan(console, result, run_config)


@app.command()
def studio(
    folder: Annotated[Path, typer.Argument(help="Folder whose run folders the studio shows (e.g. runs/)")],
    host: Annotated[
        str, typer.Option(help="Address to listen on; any but 127.0.0.1 needs --token-file")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one)")] = 7860,
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the token every client must give (16+ characters)")
    ] = None,
    upload_limit_mb: Annotated[int, typer.Option(min=1, help="Largest upload (all files of one form)")] = 200,
) -> None:
    """A local web app over the runs in FOLDER: runs with their status and gain over base, live training
    curves, each run's report, Cancel and Resume, and runs compared."""
    from tunesmith.studio.app import StudioSettings
    from tunesmith.studio.server import run_studio

    token = None
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"{token_file}: cannot read the token file ({exc.strerror})") from None
    settings = StudioSettings(host=host, port=port, token=token, upload_limit_mb=upload_limit_mb)
    run_studio(folder, settings, console)


@app.command()
def serve(
    runs: Annotated[list[str], typer.Argument(help="Run folders to serve: RUN or NAME=RUN")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file of server settings")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000; 0 picks a free one)")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="File of API keys, one per line")] = None,
    admin_key_file: Annotated[
        Path | None, typer.Option(help="File of admin keys (version switches over HTTP)")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without API keys (local use only)")
    ] = False,
    log_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the request log (default SQLite RUN/requests.db)")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Most texts per forward pass (1: no batching)")
    ] = None,
    batch_wait_ms: Annotated[float | None, typer.Option(help="How long a batch waits to fill")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="What computes answers: torch (default), llama.cpp (chat, from GGUF) or onnx "
            "(classifiers and embeddings, from ONNX)"
        ),
    ] = None,
    quant: Annotated[
        str | None, typer.Option(help="llama.cpp engine: f16 (default), f32, q8_0, q4_k_m, q5_k_m, q6_k")
    ] = None,
) -> None:
    """Serve runs over HTTP: OpenAI-compatible /v1/chat/completions, /v1/classify, /v1/feedback, /metrics.
    Every request is logged for `monitor` and `retune`; promoted or rolled-back versions swap in live."""
    from pydantic import ValidationError

    from tunesmith.config import read_yaml
    from tunesmith.serving.server import parse_runs, read_keys
    from tunesmith.serving.server import serve as run_server
    from tunesmith.serving.settings import ServeSettings

    quiet_libraries()
    tree = read_yaml(config) if config else {}
    flags = {"host": host, "port": port, "log_url": log_url, "batch_size": batch_size}
    flags.update(batch_wait_ms=batch_wait_ms, device=device, engine=engine, quant=quant)
    tree.update({k: v for k, v in flags.items() if v is not None})
    if no_auth:
        tree["auth"] = False
    if api_key_file is not None:
        tree["api_keys"] = read_keys(api_key_file)
    if admin_key_file is not None:
        tree["admin_keys"] = read_keys(admin_key_file)
    try:
        settings = ServeSettings(**tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"server settings: {where}: {first['msg']}") from None
    run_server(parse_runs(runs), settings, console)


@app.command()
def monitor(
    run: Annotated[Path, typer.Argument(help="Served run folder")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides: monitor.domain_auc=0.8 monitor.psi=0.25")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Window: 7d, 12h, 30m or an ISO date (default: all)")
    ] = None,
    log_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the request log")] = None,
    sample_to_label: Annotated[
        Path | None, typer.Option(help="Write the most unfamiliar requests here, for labelling")
    ] = None,
    sample: Annotated[int, typer.Option(help="How many requests --sample-to-label writes")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Drift of recent traffic against held-out data: embedding drift (domain classifier, MMD), length and
    unseen words, predicted label shares and confidence. Exit code 1 on drift (for cron), 0 otherwise."""
    from tunesmith.monitoring.monitor import monitor as run_monitor
    from tunesmith.monitoring.monitor import parse_since, print_monitor_report, write_sample
    from tunesmith.runs import writing

    quiet_libraries()
    with writing(run):
        report = run_monitor(run, parse_since(since), overrides, log_url)
    written = None
    if sample_to_label is not None and report["status"] != "insufficient_data":
        written = write_sample(run, report, sample_to_label, sample, log_url)
    if as_json:
        print(json.dumps({k: v for k, v in report.items() if not k.startswith("_")}, indent=2))
    else:
        print_monitor_report(console, run, report)
        if written is not None:
            console.print(
                f"{written} requests to label in {sample_to_label}; then: tunesmith retune {run} --extra FILE"
            )
    if report["drift"]:
        raise typer.Exit(1)


@app.command()
def retune(
    run: Annotated[Path, typer.Argument(help="Served run folder")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides: retune.tolerance=0.01 train.epochs=2")
    ] = None,
    feedback: Annotated[bool, typer.Option(help="Learn from the corrections sent to /v1/feedback")] = True,
    objective: Annotated[
        str | None,
        typer.Option(
            help="sft: corrections as training examples; dpo: better answers as preference pairs; kto: thumbs "
            "up/down (chat runs; retune.objective)"
        ),
    ] = None,
    extra: Annotated[
        list[Path] | None, typer.Option(help="Extra labelled file(s) in the task's format (repeatable)")
    ] = None,
    log_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the request log")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON")] = False,
) -> None:
    """A new version from the serving version's data plus corrections (and --extra files): data check,
    fine-tuning into RUN/versions/vN, then new vs serving on the same test set; promoted if not worse."""
    from tunesmith.monitoring.retune import retune as run_retune
    from tunesmith.runs import writing

    quiet_libraries()
    if objective is not None:
        overrides = [*(overrides or []), f"retune.objective={objective}"]
    with writing(run):
        result = run_retune(
            run,
            console if not as_json else make_console(stderr=True),
            feedback=feedback,
            extra=extra,
            overrides=overrides,
            log_url=log_url,
        )
    if as_json:
        print(json.dumps(result.decision, indent=2))
    else:
        result.print(console)


@app.command()
def rollback(
    run: Annotated[Path, typer.Argument(help="Served run folder")],
    to: Annotated[str | None, typer.Option(help="Version to serve (default: the one served before)")] = None,
    show: Annotated[bool, typer.Option("--list", help="List the versions and which one serves")] = False,
) -> None:
    """Serve another version of a run (a running server swaps it in within seconds, no restart)."""
    from tunesmith.runs import writing
    from tunesmith.tracking.run_tracking import record_serving
    from tunesmith.versions import Deployment

    deployment = Deployment(run)
    if show:
        state = deployment.state()
        for version in deployment.versions():
            mark = "*" if version == state["current"] else " "
            console.print(f"{mark} {version}  {deployment.folder(version)}")
        return
    with writing(run):
        state = deployment.state()
        if to is None:
            earlier = [h["from"] for h in state.get("history", []) if h.get("version") == state["current"]]
            if not earlier:
                raise UserError(f"{run}: no earlier version to roll back to; give --to VERSION")
            to = earlier[-1]
        deployment.serve(to, reason="rollback")
    console.print(f"{run}: now serving {to} (was {state['current']})")
    warn = make_console(stderr=True).print
    for line in record_serving(deployment, lambda text: warn(f"tunesmith: {text}", markup=False)):
        console.print(line, highlight=False, markup=False)


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="Run folder")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="merged (plain transformers model), adapter (peft), onnx, gguf (llama.cpp, Ollama) or "
            "sentence-transformers (embedding runs)",
        ),
    ] = "merged",
    quant: Annotated[
        str | None,
        typer.Option(
            help="gguf only: f16 (default), f32, q8_0, or q4_k_m / q5_k_m / q6_k (llama.cpp's quantizer)"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder to write (default: RUN/export-FORMAT)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in --out")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Write the trained model for use outside tunesmith, checked against the run's model before it counts."""
    from tunesmith.recipes.export import FORMATS, export_run

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    from tunesmith.runs import writing

    quiet_libraries()
    with writing(run):
        result = export_run(run, out or run / f"export-{fmt}", fmt, overwrite=overwrite, quant=quant)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps({"folder": str(result.folder), "format": fmt, **result.comparison.as_json()}))
        return
    console.print(f"exported {fmt}: [bold]{result.folder}[/]")
    console.print(f"checked against the run's model: {result.comparison.describe()}")


@app.command()
def models() -> None:
    """List the packaged models tunesmith knows by name."""
    from rich.table import Table

    from tunesmith.models.catalog import CATALOG

    table = Table(title="model catalog (weights ship inside a package; nothing downloads)")
    for col in ("name", "kind", "tasks", "params", "license", "package"):
        table.add_column(col)
    for e in CATALOG.values():
        table.add_row(
            e.name,
            e.kind,
            ", ".join(e.tasks),
            e.params,
            e.license,
            f"{e.package.replace('_', '-')}=={e.version}",
        )
    console.print(table)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


def main(argv: list[str] | None = None) -> Any:
    try:
        return app(args=argv, standalone_mode=True)
    except UserError as exc:
        print(f"tunesmith: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Interrupted as exc:  # a checkpoint holds the step it stopped at
        if os.environ.get("RANK", "0") == "0":  # one message for a distributed run
            print(f"tunesmith: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except WriteFailed as exc:
        print(f"tunesmith: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a write the file system refused, outside the writers that say what they keep
        if exc.errno not in _WRITE_ERRNOS:
            raise
        print(f"tunesmith: cannot write {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":  # one message for a distributed run
            print("tunesmith: interrupted (a run can be continued with --resume)", file=sys.stderr)
        sys.exit(130)
