"""The ``esl`` command line: a click group whose commands parse options and call the package.

User errors (bad options, missing or corrupt files, unsupported layers) are one line on stderr and
exit code 2; anything else is a bug and keeps its traceback. Warnings raised while a command runs are
held back: printed when it succeeds (or fails with a bug), dropped when it ends in a user error, so an
error stays one line (a NIR file with an infinite bias makes numpy warn before the reader refuses it).
SIGTERM and SIGHUP unwind the program like Ctrl-C (temporary files are removed on the way out) and are
reported in one line, with exit code 128 + the signal's number.
"""
from __future__ import annotations

import signal
import sys
import warnings

import click

import esl_deploy  # noqa: F401  (installs the lava compatibility hook first)
from esl_deploy.errors import EslError, Terminated


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(esl_deploy.__version__, prog_name="esl")
def esl():
    """Train sparse spiking networks and deploy them to neuromorphic hardware.

    ESL_CPU_KERNELS=avx2 (or esl train --cpu-kernels avx2) runs PyTorch's CPU kernels on AVX2, so that
    figures reproduce bit for bit on any x86-64 CPU with AVX2."""
    import os

    from esl_deploy.kernels import ENV_VAR, pin

    if os.environ.get(ENV_VAR):
        pin(os.environ[ENV_VAR])


def _register_commands() -> None:
    """Add every command; each lives in its own package and only parses options."""
    from esl_deploy.export.cli import export_cmd
    from esl_deploy.train.cli import train_cmd
    from esl_deploy.train.inspect_cli import inspect_cmd

    esl.add_command(train_cmd, "train")
    esl.add_command(inspect_cmd, "inspect")
    esl.add_command(export_cmd, "export")
    from esl_deploy.export.simulate_cli import simulate_cmd
    from esl_deploy.hw_models.cli import energy_cmd

    esl.add_command(simulate_cmd, "simulate")
    esl.add_command(energy_cmd, "energy")


def fail(message: str, code: int = 2) -> "NoReturn":  # type: ignore[name-defined]
    """Print ``message`` as one ``esl: error:`` line on stderr (line breaks folded) and exit with ``code``."""
    line = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    click.echo(f"esl: error: {line}", err=True)
    sys.exit(code)


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def _unwind_on_signals() -> dict:
    """SIGTERM and SIGHUP raise :class:`Terminated` (SIGINT already raises KeyboardInterrupt); returns the
    handlers replaced, for :func:`main` to put back."""
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        try:
            sig = getattr(signal, name)
            previous[sig] = signal.signal(sig, _raise_terminated)
        except (AttributeError, ValueError, OSError):  # no such signal here, or not the main thread
            pass
    return previous


def _show(caught) -> None:
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def main(argv=None) -> None:
    """Console entry point: run the group, turning user errors into one line and exit code 2."""
    _register_commands()
    previous = _unwind_on_signals()
    caught: list = []
    resume = "(an esl train run continues from its last completed epoch with --resume)"
    code = 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                esl.main(args=argv, prog_name="esl", standalone_mode=False)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    except EslError as e:
        message = str(e)
    except click.exceptions.Abort:
        message = f"aborted {resume}"
    except click.ClickException as e:
        message = e.format_message()
    except KeyboardInterrupt:
        message = f"interrupted {resume}"
    except Terminated as e:
        message, code = f"terminated by {signal.Signals(e.signum).name} {resume}", 128 + e.signum
    except OSError as e:  # the environment, not the program: a disk, a permission, a file system
        message = f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
    except BaseException:  # a bug: its warnings may explain it
        _show(caught)
        raise
    else:
        _show(caught)
        return
    fail(message, code)


if __name__ == "__main__":
    main()
