"""``esl train --config FILE.toml``: options from a TOML file, under the command line.

The file holds any of ``esl train``'s options under their names (``batch_size`` or ``batch-size``;
``T`` for ``--T``); a table prefixes its keys (``[pq] p = 0.5`` is ``pq_p``). Values are checked by the
option's own type, so a file can say nothing the command line could not, and TOML types are not
coerced: an integer option takes a TOML integer (``T = 2.5``, ``epochs = 1.0``, ``epochs = 1e400`` are
refused), a number option an integer or a float, a flag ``true``/``false``, every other option a string
(``density = true`` is refused). Precedence: command line > file > built-in default. Unknown keys and
wrong types are one-line errors. The file must be a regular file of at most :data:`MAX_BYTES` (a FIFO or
``/dev/zero`` is refused before it is read). A run folder records the options it ran with in
``config.toml`` (:func:`options_toml`), which ``--config`` reads back.
"""
from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Dict, Iterable, Mapping

import click

from esl_deploy.atomic import check_regular_input
from esl_deploy.errors import EslError

# Options that say how to run a command, not what the run is: not read from a file, not recorded.
NOT_IN_FILE = ("config", "resume", "force", "no_progress", "as_json", "distributed")
MAX_BYTES = 1 << 20  # a config file is a page of options; anything larger is not one


def _type_mismatch(param_type: click.ParamType, value) -> str:
    """What is wrong with a TOML ``value`` for an option of ``param_type`` ("" when it fits): no coercion,
    as a typed record would take it (bool is not a number, a float is not an integer)."""
    if isinstance(param_type, click.types.BoolParamType):
        return "" if isinstance(value, bool) else "true or false"
    if isinstance(param_type, click.types.IntParamType):
        return "" if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(param_type, click.types.FloatParamType):
        return "" if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    return "" if isinstance(value, str) else "a string"


def _flatten(d: Mapping, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for key, value in d.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}_"))
        else:
            out[name] = value
    return out


def read_config_file(path: str | Path, params: Iterable[click.Parameter], ctx: click.Context) -> Dict[str, object]:
    """``{option name: value}`` of a TOML file, each value converted and checked by its option's type."""
    path = check_regular_input(path, "config file")  # never block on a FIFO nor read /dev/zero forever
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise EslError(f"config file {path} is larger than {MAX_BYTES // 1024} KiB: not a file of options")
        raw = tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise EslError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EslError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise EslError(f"config file {path} is not valid TOML: {e}") from None
    by_name = {p.name: p for p in params if p.name not in NOT_IN_FILE}
    values = _flatten(raw)
    unknown = sorted(k for k in values if k not in by_name)
    if unknown:
        raise EslError(f"config file {path}: unknown option{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(unknown)} (the keys are esl train's options, e.g. batch_size, t_iter, pq_p)")
    out = {}
    for name, value in values.items():
        param = by_name[name]
        expected = _type_mismatch(param.type, value)
        if expected:
            kind = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
                    dict: "a table"}.get(type(value), type(value).__name__)
            shown = _toml_value(value) if isinstance(value, (bool, int, float, str)) else repr(value)
            raise EslError(f"config file {path}: {name} = {shown} is not a valid value: {name} takes {expected}, "
                           f"not {kind}")
        try:
            out[name] = param.type_cast_value(ctx, value)
        except click.BadParameter as e:
            raise EslError(f"config file {path}: {name}: {e.format_message()}") from None
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def options_toml(options: Mapping[str, object], header: str = "") -> str:
    """The options of a run as a TOML file ``--config`` reads back (None = the option's default rule,
    left out)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, value in options.items():
        if name not in NOT_IN_FILE and value is not None:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
