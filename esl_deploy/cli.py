"""The ``esl`` command line: a click group whose commands parse options and call the package.

User errors (bad options, missing or corrupt files, unsupported layers) are one line on stderr and
exit code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

import click

import esl_deploy  # noqa: F401  (installs the lava compatibility hook first)
from esl_deploy.errors import EslError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(esl_deploy.__version__, prog_name="esl")
def esl():
    """Train sparse spiking networks and deploy them to neuromorphic hardware."""


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


def fail(message: str) -> "NoReturn":  # type: ignore[name-defined]
    click.echo(f"esl: error: {message}", err=True)
    sys.exit(2)


def main(argv=None) -> None:
    """Console entry point: run the group, turning user errors into one line and exit code 2."""
    _register_commands()
    try:
        esl.main(args=argv, prog_name="esl", standalone_mode=False)
    except EslError as e:
        fail(str(e))
    except click.exceptions.Abort:
        fail("aborted (an esl train run continues from its last completed epoch with --resume)")
    except click.ClickException as e:
        fail(e.format_message())
    except KeyboardInterrupt:
        fail("interrupted (an esl train run continues from its last completed epoch with --resume)")
    except OSError as e:  # the environment, not the program: a disk, a permission, a file system
        fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")


if __name__ == "__main__":
    main()
