"""The ``hsanomaly`` command (also ``rio hsanomaly``): a thin click layer over the library.

Commands are imported only when invoked, so ``hsanomaly detect`` never imports torch.
Library errors (HsanomalyError), running out of memory and a disk or file-size limit are
printed as one line and exit with status 1; an option click itself refuses (an unknown one,
a value of the wrong type or outside its range) is one line too, with status 2, as click
gives it, while a value the library refuses (an option the score does not take, rings it
cannot read) is a library error. A warning, about the data or logged, is one ``Warning:``
line.
"""

import codecs
import contextlib
import functools
import importlib
import itertools
import logging
import os
import signal
import sys
import warnings

import click

from .._version import __version__
from ..errors import (INTERRUPTS, HsanomalyError, HsanomalyWarning, describe, memory_limit,
                      out_of_memory, out_of_memory_text)
from ..defaults import SEED_MAX
from ..spelling import command_line, some_of, spelled

COMMANDS = {
    "detect": "hsanomaly.cli.detect:detect",
    "detect-many": "hsanomaly.cli.detect_many:detect_many",
    "benchmark": "hsanomaly.cli.benchmark:benchmark",
    "thesis": "hsanomaly.cli.thesis:thesis",
    "convert": "hsanomaly.cli.convert:convert",
    "evaluate": "hsanomaly.cli.evaluate:evaluate",
    "train": "hsanomaly.cli.train:train",
    "info": "hsanomaly.cli.info:info",
}
FORMER_COMMANDS = {"report": "thesis"}      # hsanomaly 0.1's names


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def parse_args(self, ctx, args):
        """The group's own usage errors (an option before the command) as one line, as a
        command's are; no arguments at all still shows the help."""
        try:
            return super().parse_args(ctx, args)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()):   # click 8.2 on; 8.1 exits
            raise
        except click.exceptions.UsageError as err:
            option = getattr(err, "option_name", None)
            named = next((arg for arg in args if arg in COMMANDS), "detect")
            said = (f"No such option '{option}': it goes after the command (hsanomaly {named} "
                    f"{option} ...)" if option in COMMAND_OPTIONS else err.format_message())
            _fail(f"{said} (see: {ctx.command_path} --help)", 2)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        """A mistyped command gets the commands it may have meant, as a mistyped option does."""
        if args and args[0] not in COMMANDS and not args[0].startswith("-") \
                and not ctx.resilient_parsing:      # the shell's completion: no message
            import difflib

            if args[0] in FORMER_COMMANDS:
                _fail(f"No such command '{args[0]}': hsanomaly 0.2 calls it "
                      f"'{FORMER_COMMANDS[args[0]]}' (see: {ctx.command_path} --help)", 2)
            near = difflib.get_close_matches(args[0], COMMANDS, n=3, cutoff=0.6)
            if near:
                _fail(f"No such command '{args[0]}'. Did you mean {' or '.join(near)}? "
                      f"(see: {ctx.command_path} --help)", 2)
        name, command, rest = super().resolve_command(ctx, args)
        asked_help = any(arg in ctx.help_option_names for arg in
                         itertools.takewhile(lambda arg: arg != "--", rest))
        if command is not None and not ctx.resilient_parsing and not asked_help:
            twice = _given_twice(command, rest)
            if twice:
                _fail(f"{twice} is given twice; {name} takes one (see: {ctx.command_path} "
                      f"{name} --help)", 2)
        return name, command, rest

    def main(self, *args, **kwargs):
        """The command line from its first moment: ``import hsanomaly`` loads nothing heavy,
        so an interrupt while the command's modules load is one line too."""
        with _taking_signals():
            return super().main(*args, **kwargs)

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:            # click would say "Aborted!"
            what, status = _interruption()
            _fail(what + "; nothing was replaced", status)
        except BrokenPipeError:              # `hsanomaly --help | head`
            _reader_gone()
        except OSError as err:               # `hsanomaly --help > /dev/full`
            name = args[0] if args else kwargs.get("info_name")
            _fail(f"{err.filename or name or 'hsanomaly'}: {describe(err)}", 1)

    def invoke(self, ctx):
        _fill_closed_descriptors()
        for stream in (sys.stdout, sys.stderr):    # a name the console's code page lacks
            with contextlib.suppress(AttributeError, ValueError):     # (Windows, redirected)
                stream.reconfigure(errors="backslashreplace")         # is escaped, not fatal
        if sys.stderr is None:       # started with it closed (2>&-): messages go nowhere, as
            sys.stderr = open(os.devnull, "w")      # asked, and the run goes on
        shown, written = warnings.showwarning, []
        try:
            from ..cluster import quiet_dask
            from ..io.atomic import file_size_signal_ignored, recording_writes

            warnings.showwarning = _show_warning
            # past ulimit -f a write fails (EFBIG), the process lives; a lost Dask scheduler or
            # worker is one line, not Dask's tracebacks; GDAL's errors arrive as exceptions
            with file_size_signal_ignored(), quiet_dask(), _libraries_unlogged(), \
                    _taking_signals(), _interrupt_first(), \
                    recording_writes() as written:                    # also under `rio`
                done = super().invoke(ctx)
            for number in INTERRUPTS:      # the work is done: a signal ends it as any process
                if signal.getsignal(number) is _terminated:   # (one ignored, as nohup does, stays)
                    signal.signal(number, signal.SIG_DFL)
            return done
        except KeyboardInterrupt as err:
            what, status = _interruption()
            noted = [note for note in getattr(err, "__notes__", ()) if "tiles are kept" in note]
            _fail(what + (f"; the outputs were not replaced; {noted[0]}" if noted and
                          ctx.invoked_subcommand == "detect" else _kept(ctx, written)), status)
        except (HsanomalyError, HsanomalyWarning) as err:    # a warning made an error (-W error)
            _fail(str(err), 1)
        except click.exceptions.UsageError as err:
            command = f" {ctx.invoked_subcommand}" if ctx.invoked_subcommand else ""
            _fail(f"{_dashed_file(err)} (see: {ctx.command_path}{command} --help)", 2)
        except UnicodeEncodeError as err:    # click's check of a name, before the library's
            if codecs.lookup(err.encoding).name != codecs.lookup(sys.getfilesystemencoding()).name:
                raise
            _fail(f"{ascii(err.object)}: a name this locale's encoding ({err.encoding}) cannot "
                  "spell; run under a UTF-8 locale (LC_ALL=C.UTF-8)", 1)
        except BrokenPipeError:     # `hsanomaly evaluate ... | head`
            _reader_gone()
        except (MemoryError, RuntimeError, ImportError, OSError) as err:
            if out_of_memory(err):     # a library's words for it too (a limit's, ulimit -v)
                tile = ctx.invoked_subcommand in ("detect", "detect-many")
                _fail(f"{out_of_memory_text(err)}; try "
                      + ("raising the limit, " if memory_limit() else "")
                      + f"{'a smaller --tile or ' if tile else ''}a machine with more memory", 1)
            if not isinstance(err, OSError):
                raise
            # one without a file: stdout, past the outputs' commit
            kept = [path for path in written if os.path.lexists(path)]
            where = err.filename or ("standard output" if kept else ctx.command_path)
            _fail(f"{where}: {describe(err)}" + (
                f" (the outputs were written before, complete: {', '.join(kept[:4])})"
                if kept and err.filename is None else ""), 1)
        finally:
            warnings.showwarning = shown


def _given_twice(command, args):
    """The first option of ``command`` that takes one value and is given twice in ``args``
    (click keeps the last: ``--mask a.tif --mask b.tif`` masked b only); None if none is."""
    single = {name: param for param in command.params if isinstance(param, click.Option)
              and not (param.multiple or param.count or param.is_flag) for name in param.opts}
    seen = set()
    args = iter(args)
    for arg in args:
        if arg == "--":
            break
        name, joined, _ = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if not arg.startswith("--") and len(arg) > 2 and arg[:2] in single:
            name, joined = arg[:2], arg[2:]                  # -ob: -o's value attached
        param = single.get(name)
        if param is None:
            continue
        if param.name in seen:
            return name
        seen.add(param.name)
        if not joined:
            next(args, None)         # its value, whatever it looks like
    return None


def _dashed_file(err):
    """A usage error's message, with how to give a file whose name begins with a dash, which
    click took for an option ("No such option '-x'" for -x.tif)."""
    option = getattr(err, "option_name", None)
    named = [arg for arg in sys.argv[1:] if option and arg.startswith(option)
             and os.path.exists(arg)]
    if not named:
        return err.format_message()
    return (f"{err.format_message().rstrip('.')} ({named[0]} is a file: give it as "
            f"./{named[0]}, or after --)")


@contextlib.contextmanager
def _libraries_unlogged():
    """GDAL's errors reach a command as exceptions: the libraries' loggers of them (with no
    handler, Python's last resort prints them) get a null handler for the command."""
    handlers = {name: logging.NullHandler() for name in ("rasterio", "pyogrio", "fiona")}
    for name, handler in handlers.items():
        logging.getLogger(name).addHandler(handler)
    try:
        yield
    finally:
        for name, handler in handlers.items():
            logging.getLogger(name).removeHandler(handler)


def _fill_closed_descriptors():
    """Put /dev/null in each of descriptors 0, 1 and 2 that the process was started without
    (``>&- 2>&-``, as cron or a daemon may start it): the next file opened would take the
    number, and the input raster GDAL opened as descriptor 2 was then swapped for /dev/null
    while libtiff's messages were kept off stderr. Python's own ``sys.stdout`` stays None, so
    a command that must write there still says it is closed."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _reader_gone():
    """The reader of stdout had enough: end as a tool killed by SIGPIPE, without a word (and
    without Python's complaint when it flushes stdout at exit)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(128 + getattr(signal, "SIGPIPE", 13))      # Windows has none: its number


def show_progress(quiet):
    """Whether a command draws its progress bar: not under -q, and only on a terminal (in a
    log file or a pipe its redrawn lines are noise)."""
    return not quiet and sys.stderr.isatty()


def progress_log(quiet):
    """Where no bar is drawn but the log shows stages (-v into a log file or a batch job's
    output), a ``callback`` that logs how far the run got now and then; else None."""
    from ..logs import LOGGER, progress_lines

    if show_progress(quiet) or not LOGGER.isEnabledFor(logging.INFO):    # -q: warnings only
        return None
    return progress_lines()


# the options every command takes: given before the command, they are the group's, which has none
COMMAND_OPTIONS = ("-v", "--verbose", "-q", "--quiet")
QUIET_HELP = "Only warnings and errors on stderr: no progress bar, progress or stage lines."
# for a command that reads --quiet itself (its progress bar or lines); ``with_verbosity``
# gives the others the same option
quiet_option = click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)
# a seed's range, refused by click as any option out of range is (status 2)
SEED_RANGE = click.IntRange(0, SEED_MAX)


def with_verbosity(command):
    """Give ``command`` -v/--verbose and -q/--quiet and configure the library's log from them;
    while it runs, the library's messages name its flags and arguments (``spelling``).

    Stage names (fitting, assembling, ...) are shown on an interactive terminal, with their
    times under -v; -q shows warnings and errors only. A command's own ``quiet`` parameter
    (which also turns its progress bar off) is kept and read.
    """
    if getattr(command, "hsanomaly_verbosity", False):
        return command
    names = {param.name for param in command.params}
    command.params.append(click.Option(["--verbose", "-v"], count=True,
                                       help="Log each stage with its time."))
    owns_quiet = "quiet" not in names
    if owns_quiet:
        command.params.append(click.Option(["--quiet", "-q"], is_flag=True, help=QUIET_HELP))
    callback = command.callback
    spelling = command_line({param.name: param.human_readable_name if isinstance(param, click.Argument)
                             else max(param.opts, key=len) for param in command.params})

    def run(**kwargs):
        from ..logs import configure

        verbose = kwargs.pop("verbose")
        quiet = kwargs.pop("quiet") if owns_quiet else kwargs["quiet"]
        if verbose and quiet:
            raise click.UsageError("--verbose and --quiet ask for opposite things; give one")
        configure(-1 if quiet else 1 if verbose else 0 if sys.stderr.isatty() else -1)
        with spelled(spelling):      # the library's messages name this command's flags
            return callback(**kwargs)

    command.callback = functools.update_wrapper(run, callback)
    command.hsanomaly_verbosity = True
    return command


_RECEIVED: list = []      # the signals that interrupted this command
FORCE_AFTER = 3           # the signal that ends the process at once, cleaned up or not


def _terminated(number, frame):
    """The first signal cleans up as Ctrl-C does; the next wait for that cleanup and its one
    line (a second Ctrl-C cut them short: click's "Aborted!", status 1), and the third
    ends the process at once."""
    if number == getattr(signal, "SIGXCPU", None) and number in _RECEIVED:
        return           # the kernel's reminder each CPU second, not a user who insists
    _RECEIVED.append(number)
    if len(_RECEIVED) == 1:
        raise KeyboardInterrupt
    if len(_RECEIVED) >= FORCE_AFTER:
        signal.signal(number, signal.SIG_DFL)
        signal.raise_signal(number)


@contextlib.contextmanager
def _taking_signals():
    """Ctrl-C, SIGTERM, SIGHUP and SIGXCPU clean up as Ctrl-C does while the block runs
    (where they are not taken already; outside the main thread they are left as they are, and
    so is one the command was started ignoring: nohup's SIGHUP, a background job's SIGINT)."""
    if signal.getsignal(signal.SIGTERM) is _terminated:
        yield
        return
    del _RECEIVED[:]
    try:
        # (a handler set outside Python, an embedding host's, reads as None: left to it)
        before = {number: signal.signal(number, _terminated) for number in INTERRUPTS
                  if signal.getsignal(number) not in (signal.SIG_IGN, None)}
    except ValueError:           # not the main thread (a caller's own thread)
        before = {}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _interrupt_first():
    """An interrupt whose unwinding raised another error (a file closed under a half-written
    tile, say) ends the command as the interrupt: it ended with status 1 and that error."""
    try:
        yield
    except Exception as err:
        seen, cause = set(), err
        while cause is not None and id(cause) not in seen and \
                not isinstance(cause, KeyboardInterrupt):
            seen.add(id(cause))
            cause = cause.__context__
        if cause is None or cause is err:
            raise
        raise cause from None


def _interruption():
    """(what ended the command, its exit status): as a shell reports a signal, 128 + its number.
    An interrupt may leave an object half made (a ZipFile whose ``__init__`` it cut short),
    whose finaliser then fails as the process ends: the one line says what happened, so
    such failures are not printed after it."""
    sys.unraisablehook = lambda unraisable: None
    number = _RECEIVED[0] if _RECEIVED else signal.SIGINT
    what = {signal.SIGTERM: "terminated (SIGTERM)",
            getattr(signal, "SIGHUP", None): "hung up (SIGHUP: the terminal closed)",
            getattr(signal, "SIGXCPU", None): "out of CPU time (SIGXCPU: a soft CPU-time "
                                              "limit, ulimit -St or a batch queue's)"}
    return what.get(number, "interrupted"), 128 + number


# the commands whose outputs are all put in place by one commit, their last step (a batch,
# a benchmark or a reproduction commits models and results one by one)
ONE_COMMIT = ("detect", "train", "evaluate", "convert")


def _kept(ctx, written=()):
    """What an interrupted command leaves: its outputs as they were, and what its next run
    can take up (it cannot tell here how far it got, so "if any"); or, interrupted once its
    outputs were put in place (``written``), those outputs, complete; a command that commits
    step by step names what it had written (a temporary that went with the interrupt, not)."""
    command = ctx.invoked_subcommand
    written = [path for path in written if os.path.lexists(path)]
    shown = some_of(written, 4)
    if written and command in ONE_COMMIT:
        return f" once its outputs were in place ({shown}: complete)"
    if written and command != "detect-many":      # a batch says it of its rasters
        return f"; written before it, complete: {shown}; nothing else was replaced"
    return {"detect": "; the outputs are replaced all together or not at all; the tiles "
                      "finished, if any, are kept for --resume",
            "detect-many": "; the rasters finished are kept, the one being scored was not "
                           "replaced; rerun without --overwrite to go on",
            "train": "; nothing was replaced; a checkpoint, if one was written, is kept for "
                     "--resume"}.get(command, "; nothing was replaced")


def _fail(message, status):
    click.echo(f"Error: {' '.join(str(message).split())}", err=True)
    sys.exit(status)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings about the data as one line; the libraries' own (numpy's overflow, rasterio's
    nodata shadowing, scikit-learn's convergence) are the developers' diagnostics, a debug
    line under -v: what matters to the user of them hsanomaly says itself."""
    from ..errors import HsanomalyWarning
    from ..logs import LOGGER

    if issubclass(category, HsanomalyWarning):
        from ..io.atomic import to_stderr

        # a stderr that cannot take it (a full disk, a reader gone) loses the line, as
        # logging's does, not the run: raised inside a commit, it failed the outputs
        with contextlib.suppress(OSError):
            to_stderr(f"Warning: {' '.join(str(message).split())}\n")
    else:
        LOGGER.debug("%s: %s (%s:%s)", category.__name__, " ".join(str(message).split()),
                     filename, lineno)


# a wide terminal gets wider help (click's own stops at 80 columns)
@click.group(name="hsanomaly", cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, prog_name="hsanomaly")   # the package's own, also under rio
def main():
    """Find anomalies in hyperspectral rasters (RX, Gaussian mixture, Wasserstein GANs)."""
