"""Memory the machine can give: refuse work that would not fit, with one line, before it starts."""
from __future__ import annotations

from typing import Optional

from .errors import EslError


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def check_memory(need: int, what: str, hint: str = "lower --T, --batch-size or --width") -> None:
    """Refuse (EslError) work whose estimated memory ``need`` exceeds 90 % of what is available."""
    have = available_memory()
    if have is not None and need > 0.9 * have:
        raise EslError(f"{what} needs about {need / 2**30:.1f} GiB of memory, this machine has "
                       f"{have / 2**30:.1f} GiB available; {hint}")
