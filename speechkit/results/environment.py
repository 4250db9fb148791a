"""Where and with what a result was produced: machine, library versions, git state, stage timings."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

#: Done-marker names with a shard suffix (``codes.3``) are summed per stage.
_SHARD_SUFFIX = re.compile(r"\.\d+$")


def cpu_model() -> str:
    """CPU model name (from /proc/cpuinfo on Linux, else ``platform.processor()``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def package_version(name: str) -> str:
    """Installed version of distribution ``name``, or ``"not installed"``."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


#: tracked files that the recipes themselves write: they do not make the code "dirty" (a rerun of
#: stage 8 re-renders RESULTS.md, which then differs from the committed one)
GENERATED_FILES = ("**/RESULTS.md",)


def git_state(directory: str | Path = ".") -> dict[str, Any]:
    """``{"commit": hash or "unknown", "dirty": bool | None}`` of the repository holding ``directory``
    (dirty: a tracked file other than :data:`GENERATED_FILES` differs from the commit)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown", "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                 *(f":(top,exclude,glob){pattern}" for pattern in GENERATED_FILES))
    return {"commit": commit.strip(), "dirty": bool(status.strip()) if status is not None else None}


def environment(directory: str | Path = ".") -> dict[str, Any]:
    """Machine and software facts for a results header.

    ``directory`` is the experiment's parent (kept for callers); the git facts are those of the
    repository holding the running speechkit code.
    """
    import torch

    import speechkit

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "speechkit": speechkit.__version__,
        "faster-whisper": package_version("faster-whisper"),
        "resemblyzer": package_version("resemblyzer"),
        "speechmos": package_version("speechmos"),
        "sacrebleu": package_version("sacrebleu"),
        "jiwer": package_version("jiwer"),
        # the commit of the speechkit code that is running (not of the working directory, which
        # may be a recipe copy, or a checkout other than the code that produced the results)
        **{f"git_{key}": value for key, value in git_state(Path(speechkit.__file__).resolve().parent).items()},
    }


def stage_timings(roots: list[Path]) -> list[tuple[str, float]]:
    """``(stage, seconds)`` from the done-markers (``.done.<name>``, with ``seconds``) under ``roots``.

    Markers of one stage's shards (``.done.codes.0``, ``.done.codes.1``) are summed; the label is
    the marker's directory relative to its root's parent plus the stage name (``exp/ar: train``).
    """
    totals: dict[str, float] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for marker in sorted(root.rglob(".done.*")):
            try:
                seconds = float(json.loads(marker.read_text()).get("seconds", 0.0))
            except (OSError, ValueError, TypeError, AttributeError):
                continue
            name = _SHARD_SUFFIX.sub("", marker.name[len(".done."):])
            label = f"{marker.parent.relative_to(root.parent)}: {name}"
            totals[label] = totals.get(label, 0.0) + seconds
    return sorted(totals.items())
