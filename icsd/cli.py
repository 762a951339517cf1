"""Command line: `icsd run`, `icsd batch`, `icsd compress`, `icsd compare`, `icsd status`.

Longer than ~400 lines on purpose: one short handler per command; their work lives in the modules they call.

User errors become one line on stderr and a sysexits code, never a traceback. The flags of `run`
and `batch` are generated from the Settings model, so every setting is a flag with the same words
as its environment variable (`ICSD_MAX_SIZE` <-> `--max-size`).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import os
import signal
import sys
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path

from icsd import __version__
from icsd.daemon.fork_server import start_for_command
from icsd.errors import EX_USAGE, DataError, IcsdError, InputError, OutputError, SettingsError, UsageError
from icsd.report.options import SIZE_FLAGS as COMPARE_SIZE_FLAGS
from icsd.report.options import add_arguments as add_compare_arguments

__all__ = ["build_parser", "main"]

log = logging.getLogger("icsd")

# `icsd compress` takes the compression flags only; the daemon's flags make no sense for one file.
COMPRESS_FLAGS = ("strategy", "colors", "bits", "grayscale", "scale", "resample", "max_size", "size", "seed",
                  "max_pixels", "palette", "dither", "dither_strength", "alpha", "background", "color_space",
                  "png_effort")
# `icsd palette learn`: what shapes the pixels a palette is learned from, and the pool.
LEARN_FLAGS = (*(flag for flag in COMPRESS_FLAGS if flag not in ("palette", "png_effort")), "workers")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    start_for_command(argv)  # already running when started through icsd.launch; idempotent
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # the command's usage, not the top level's, then one line with the best guess
        command = parser.commands[args.command]
        command.print_usage(sys.stderr)
        parser.exit(EX_USAGE, f"icsd: error: {_unrecognized(extras, command)}\n")
    try:
        return args.handler(args)
    except IcsdError as exc:
        print(f"icsd: error: {_as_typed(exc.message, args)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("icsd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `icsd status | head -1`: the reader has gone, as for any CLI tool
        _discard_stdout()
        return 128 + signal.SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    from icsd.settings import Settings

    parser = _Parser(
        prog="icsd",
        description="Image Compression System daemon: downsample images and reduce them to K colours.",
        epilog="Every setting is also an environment variable ICSD_<NAME> (or a line in ./.env); "
        "flags win over the environment, the environment over .env.",
    )
    parser.add_argument("--version", action="version", version=f"icsd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Explicit usage lines: Python 3.11's wrapped auto-usage fails on mutually exclusive groups.
    run = commands.add_parser(
        "run", help="watch the input folder and compress every image that arrives", usage="icsd run [SETTINGS]"
    )
    _add_setting_flags(run, Settings, names=None)
    run.set_defaults(handler=_cmd_run)

    batch = commands.add_parser(
        "batch", help="compress what is in a folder, then exit (non-zero if any failed)",
        usage="icsd batch [FOLDER] [SETTINGS]",
    )
    batch.add_argument("folder", nargs="?", type=Path, help="input folder [default: ICSD_INPUT_DIR]")
    _add_setting_flags(batch, Settings, names=None)
    batch.set_defaults(handler=_cmd_batch)

    one = commands.add_parser(
        "compress", help="compress one file and print size before/after",
        usage="icsd compress FILE [-o OUT] [--strategy S] [--colors K | --bits B] [--grayscale] "
        "[--scale F | --max-size WxH | --size WxH] [...]",
    )
    one.add_argument("file", type=Path, help="image to compress")
    # str, not Path: Path("") is "." and an empty -o would silently mean the current folder.
    one.add_argument("-o", "--output", help="output PNG [default: FILE with .png beside it]")
    one.add_argument("-f", "--force", action="store_true",
                     help="replace the output file if it exists (without it, an existing file is an error)")
    _add_setting_flags(one, Settings, names=COMPRESS_FLAGS)
    one.set_defaults(handler=_cmd_compress)

    palette = commands.add_parser(
        "palette", help="learn one palette from a dataset (for ICSD_PALETTE)", usage="icsd palette learn ..."
    )
    palette_commands = palette.add_subparsers(dest="palette_command", required=True, metavar="ACTION")
    learn = palette_commands.add_parser(
        "learn", help="learn K colours from the images in a folder and write them as .gpl, .png or .json",
        usage="icsd palette learn [FOLDER] -o FILE [--colors K] [--sample N] [--seed S] [SETTINGS]",
    )
    learn.add_argument("folder", nargs="?", type=Path, help="images to learn from [default: ICSD_INPUT_DIR]")
    learn.add_argument("-o", "--output", required=True, type=Path,
                       help="palette file to write; its suffix picks the format: .gpl (GIMP), .png (swatch), .json")
    learn.add_argument("--sample", type=int, default=None, metavar="N",
                       help="learn from N images spread over the folder (seeded by --seed) [default: all]")
    _add_setting_flags(learn, Settings, names=LEARN_FLAGS)
    learn.set_defaults(handler=_cmd_palette_learn)

    manifest = commands.add_parser(
        "manifest", help="write one row per output (source, sizes, colours, palette, ...) for ML pipelines",
        usage="icsd manifest [-o FILE] [--output-dir DIR] [--state-dir DIR]",
    )
    manifest.add_argument("-o", "--output", default=None,
                          help="manifest file; .jsonl, .csv or .parquet by suffix; - for JSON lines on stdout "
                          "[default: OUTPUT_DIR/manifest.jsonl]")
    _add_setting_flags(manifest, Settings, names=("output_dir", "state_dir"))
    manifest.set_defaults(handler=_cmd_manifest)

    compare = commands.add_parser(
        "compare", help="compress sample images every way asked and write an HTML page to compare them",
        usage="icsd compare FILE|DIR... [--colors K,...] [--strategies all|S,...] [--dither D,...] [--sample N] "
        "[-o PAGE.html] [--sheet SHEET.png] [--force] [--scale F | --max-size WxH | --size WxH] [...]",
    )
    add_compare_arguments(compare)
    _add_setting_flags(compare, Settings, names=COMPARE_SIZE_FLAGS)
    compare.set_defaults(handler=_cmd_compare)

    status = commands.add_parser(
        "status", help="print journal counts by state, stale outputs and the last failures",
        usage="icsd status [--output-dir DIR] [--state-dir DIR] [--failures N] [SETTINGS]",
    )
    # The compression settings too: outputs made with other settings than these are counted as stale.
    _add_setting_flags(status, Settings, names=("input_dir", "output_dir", "state_dir", *COMPRESS_FLAGS))
    status.add_argument("--failures", type=int, default=10, help="how many recent failures to list")
    status.set_defaults(handler=_cmd_status)
    parser.commands = {"run": run, "batch": batch, "compress": one, "palette": learn, "manifest": manifest,
                       "compare": compare, "status": status}
    return parser


# -- commands ---------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from icsd.daemon.service import Service

    settings = _settings_from(args)
    _check_input_folder(settings.input_dir, hint="check ICSD_INPUT_DIR", must_exist=False)
    service = _prepared_service(settings, Service, mode="watch")
    _stop_on_signals(service)
    return service.run().exit_code


def _cmd_batch(args: argparse.Namespace) -> int:
    from icsd.daemon.progress import ProgressBar
    from icsd.daemon.service import Service

    if args.folder is not None:
        args.input_dir = args.folder
    settings = _settings_from(args)
    # `run` creates its drop folder; a batch over nothing is a typo
    hint = "check the FOLDER argument" if args.folder is not None else "check ICSD_INPUT_DIR or give a FOLDER"
    _check_input_folder(settings.input_dir, hint=hint, must_exist=True)
    service = _prepared_service(settings, Service, mode="batch")
    received = _stop_on_signals(service)
    bar = ProgressBar(total=0)
    for handler in logging.getLogger("icsd").handlers:
        bar.wrap(handler)
    service.on_progress.append(lambda _fields: bar.advance(total=service.tally.done + service.tally.failed
                                                           + service.queued))
    try:
        code = service.run().exit_code
    finally:
        bar.clear()
    if received and code in (0, 1):  # stopped early: what is left is not done, and scripts must know
        return 128 + received[0]
    return code


def _cmd_compress(args: argparse.Namespace) -> int:
    from icsd.core import ImageError, compress, preload_strategy
    from icsd.daemon.output import write_atomic
    from icsd.daemon.progress import colours, human_bytes, reduction_pct

    _warn_unknown_env()
    settings = _settings_from(args)
    params = settings.params()
    source: Path = args.file
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror or exc}") from None
    target = _compress_target(source, args.output, force=args.force)
    preload_strategy(params.strategy)  # scikit-learn's import is not the image's time
    try:
        result = compress(data, params)
    except ImageError as exc:  # the core's: bad image data, exit 65
        raise DataError(f"{source}: {exc.message}") from None
    try:
        write_atomic(target.parent.resolve(), target.name, result.data, replace=args.force)
    except FileExistsError:  # appeared while we worked
        raise OutputError(_exists(target)) from None
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}; choose another path with -o") from None
    (w_in, h_in), (w_out, h_out) = result.input_size, result.output_size
    print(f"{source} -> {target}")
    print(f"size before: {human_bytes(result.input_bytes)} ({w_in}x{h_in} px)")
    print(f"size after:  {human_bytes(result.output_bytes)} ({w_out}x{h_out} px, "
          f"{colours(result.colors, grey=params.grayscale)}, "
          f"{result.strategy})")
    print(f"reduction:   {reduction_pct(result.input_bytes, result.output_bytes):.1f}%")
    if result.psnr is not None:
        fidelity = "exact" if math.isinf(result.psnr) else f"{result.psnr:.2f} dB"
        print(f"PSNR:        {fidelity} (against the downsampled image)")
    print(f"time:        {result.seconds:.2f} s")
    return 0


def _cmd_palette_learn(args: argparse.Namespace) -> int:
    from icsd.daemon.learn import learn_command

    _warn_unknown_env()
    if args.folder is not None:
        args.input_dir = args.folder
    # ICSD_PALETTE (say in .env) may name the very file being learned: it plays no part here
    settings = _settings_from(args, validate=False).model_copy(update={"palette": None})
    settings.params()
    _check_input_folder(settings.input_dir, hint="check the FOLDER argument or ICSD_INPUT_DIR", must_exist=True)
    return learn_command(settings, output=args.output, sample=args.sample)


def _cmd_manifest(args: argparse.Namespace) -> int:
    from icsd.daemon.manifest import manifest_command

    _warn_unknown_env()
    return manifest_command(_settings_from(args, validate=False), output=args.output)


def _cmd_compare(args: argparse.Namespace) -> int:
    from icsd.report.command import compare

    _warn_unknown_env()
    return compare(args, _settings_from(args))


def _cmd_status(args: argparse.Namespace) -> int:
    from icsd.daemon.journal import Journal
    from icsd.daemon.logs import one_line

    _warn_unknown_env()
    settings = _settings_from(args, validate=False)
    path = settings.state_path / "journal.sqlite3"
    if not _exists_or_error(path, InputError, f"cannot read the journal {path}", "check ICSD_OUTPUT_DIR"):
        raise SettingsError(f"no journal at {path}: icsd has not run with ICSD_OUTPUT_DIR={settings.output_dir}")
    journal = Journal.open_readonly(path)
    try:
        counts = journal.counts()
        print("  ".join(f"{state}: {count}" for state, count in counts.items()))
        if stale := _stale_line(journal, settings):
            print(stale)
        failures = journal.recent_failures(args.failures)
        if failures:
            print("recent failures:")
            for entry in failures:
                print(one_line(f"  {entry.rel}: {entry.error}"))
    finally:
        journal.close()
    return 0


# -- helpers ----------------------------------------------------------------------------------


def _stale_line(journal: typing.Any, settings: typing.Any) -> str | None:
    """`icsd status`'s count of outputs made with other settings than the current ones (None: there are none)."""
    from icsd.daemon.logs import one_line
    from icsd.daemon.stale import stale_outputs

    try:
        fingerprint = settings.params().fingerprint()
    except SettingsError as exc:
        return one_line(f"stale: unknown, the current settings are invalid: {exc.message}")
    stale = stale_outputs(journal, fingerprint, settings.input_dir)
    return stale.status_line() if stale.total else None


def _prepared_service(settings: typing.Any, service_class: typing.Any, *, mode: str) -> typing.Any:
    from icsd.daemon.logs import setup_logging
    from icsd.settings import unknown_env_warnings

    # watchdog 7 warns when `mkdir -p` races its recursive inotify setup; it re-registers the same callback
    # on the same watch, which is harmless, so keep it out of operators' logs.
    warnings.filterwarnings("ignore", message=r"Callback with id .* already exists for watch", category=RuntimeWarning)
    setup_logging(settings.log_level.upper(), settings.log_format)
    for warning in unknown_env_warnings():
        log.warning(warning)
    return service_class(settings, mode=mode)  # validates every setting; run() makes the folders


class _Parser(argparse.ArgumentParser):
    """argparse, but a command-line mistake exits EX_USAGE (64) rather than 2: sysexits like every other
    error of icsd, and one the systemd unit does not restart in a loop (RestartPreventExitStatus=64 78)."""

    commands: dict[str, argparse.ArgumentParser]  # the subcommands' parsers, for "did you mean"

    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _check_input_folder(folder: Path, *, hint: str, must_exist: bool) -> None:
    """The input must be a folder: a file given by mistake is named as such, not "does not exist"."""
    exists = _exists_or_error(folder, InputError, f"cannot read input folder {folder}", hint)
    if exists and not folder.is_dir():
        raise InputError(f"input folder {folder} is not a folder: {hint} (icsd compress takes one file)")
    if must_exist and not exists:
        raise InputError(f"input folder {folder} does not exist: {hint}")


def _compress_target(source: Path, output: str | None, *, force: bool) -> Path:
    """Where `icsd compress` writes, checked before the work is done; never the input itself, and never a file
    that exists unless `force` (pngquant's convention: icsd did not write it, so it is not icsd's to replace)."""
    if output is not None and not output.strip():
        raise UsageError("-o/--output is empty: give the output file name (e.g. -o small.png)")
    target = Path(output) if output is not None else source.with_suffix(".png")
    try:
        if target.is_dir() or (output is not None and output.endswith("/")):  # Path() drops a trailing slash
            example = target / f"{source.stem}.png"
            raise OutputError(f"cannot write {target}/: it names a folder; give a file name (e.g. -o {example})")
        if target.is_symlink() or (target.exists() and not target.is_file()):
            # The atomic write renames a new file over the target: it would replace the link, the FIFO or, as
            # root, a device node such as /dev/null with a regular file.
            raise OutputError(f"cannot write {target}: it is not a regular file; choose another path with -o")
        if target.parent.exists() and not target.parent.is_dir():
            raise OutputError(f"cannot write {target}: {target.parent} is not a folder; choose another path with -o")
        if target.resolve() == source.resolve():
            target = source.with_name(f"{source.stem}.icsd.png")
        if not force and os.path.lexists(target):
            raise OutputError(_exists(target))
    except OSError as exc:  # a folder on the way we may not search: one line, not a traceback
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}; choose another path with -o") from None
    return target


def _exists(target: Path) -> str:
    return f"{target} already exists: add --force to replace it, or choose another path with -o"


def _exists_or_error(path: Path, error: type[IcsdError], what: str, hint: str) -> bool:
    """path.exists(), with an OSError (a folder on the way we may not search) as `error`'s one line."""
    try:
        return path.exists()
    except OSError as exc:
        raise error(f"{what}: {exc.strerror or exc}; {hint}") from None


def _unrecognized(extras: list[str], command: argparse.ArgumentParser) -> str:
    """argparse's message, with "did you mean" for a misspelt flag of the command (`--colour` -> `--colors`)."""
    message = f"unrecognized arguments: {' '.join(extras)}"
    known = sorted(option for option in command._option_string_actions if option.startswith("--"))
    for extra in extras:
        flag = extra.partition("=")[0]
        close = difflib.get_close_matches(flag, known, n=1) if flag.startswith("--") else []
        if close:
            return f"{message}; did you mean {close[0]}?"
    return message


def _as_typed(message: str, args: argparse.Namespace) -> str:
    """An error message naming each setting as the user gave it: the flag, the variable or the .env line."""
    from icsd.settings import Settings, as_typed

    flags = {name: "--" + name.replace("_", "-") for name in Settings.model_fields
             if getattr(args, name, None) is not None}
    if getattr(args, "folder", None) is not None:
        flags["input_dir"] = "FOLDER"
    return as_typed(message, flags)


def _stop_on_signals(service: typing.Any) -> list[int]:
    """SIGTERM/SIGINT make the service stop taking files and drain, so it still logs its summary.

    Returns the list the handler appends each received signal number to.
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: types.FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        received.append(signum)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return received


def _warn_unknown_env() -> None:
    """One stderr line per misspelt ICSD_* variable, for the commands that do not set up logging."""
    from icsd.settings import unknown_env_warnings

    for warning in unknown_env_warnings():
        print(f"icsd: warning: {warning}", file=sys.stderr)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the final flush at exit cannot raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _settings_from(args: argparse.Namespace, *, validate: bool = True) -> typing.Any:
    from icsd.settings import Settings, load_settings

    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    settings = load_settings(**overrides)
    if validate:
        settings.params()
    return settings


def _add_setting_flags(parser: argparse.ArgumentParser, model: typing.Any, names: Sequence[str] | None) -> None:
    from icsd.settings import ALTERNATIVES

    group = parser.add_argument_group("settings (each also ICSD_<NAME> in the environment or .env)")
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for name, field in model.model_fields.items():
        if names is not None and name not in names:
            continue
        alternatives = next((alt for alt in ALTERNATIVES if name in alt), None)  # one colour count, one size rule
        target = group
        if alternatives is not None:
            target = exclusive.setdefault(alternatives[0], group.add_mutually_exclusive_group())
        flag = "--" + name.replace("_", "-")
        env = f"ICSD_{name.upper()}"
        default = field.default
        shown = "" if default is None or "[default" in (field.description or "") else f" [default: {default}]"
        help_text = f"{field.description}{shown} (env {env})"
        kind, choices = _flag_type(field.annotation)
        if kind is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            target.add_argument(flag, type=kind, choices=choices, default=None, metavar=name.upper(), help=help_text)


def _flag_type(annotation: typing.Any) -> tuple[typing.Any, list[str] | None]:
    """The argparse type (and choices) for a settings annotation like `int | None` or Literal[...]."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return str, list(typing.get_args(annotation))
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _flag_type(args[0])
    if annotation is Path:
        return Path, None
    return annotation, None


if __name__ == "__main__":
    sys.exit(main())
