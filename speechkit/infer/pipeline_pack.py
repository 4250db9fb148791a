"""The VALL-E X pipeline pack: every component inference needs, in one loadable directory.

Layout (a :mod:`speechkit.pack` directory plus the phone table)::

    <pack>/pack.yaml      components: codec, frontend, ar_lm, nar_lm [, st_frontend]
    <pack>/codec/         the codec's own saved state (trainable codecs)
    <pack>/ar_lm.pt, nar_lm.pt [, st_frontend.pt]
    <pack>/tokens.txt     the phone table the LMs and the ST model were trained with

Stage 7 assembles it from the separately trained parts (``exp/codec``, ``exp/ar/pack``,
``exp/nar/pack``, ``exp/st/pack``), checking that they agree on the phone table, the codebook and
the number of levels, so a mismatched pack fails here rather than as garbage audio later.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Mapping

from speechkit.errors import ConfigError
from speechkit.text.phone_table import PhoneTable

log = logging.getLogger("speechkit.infer")

TOKENS_FILE = "tokens.txt"
#: Components a pipeline pack must hold (``st_frontend`` is optional: S2ST only).
REQUIRED_KINDS = ("codec", "frontend", "ar_lm", "nar_lm")


def assemble_pipeline_pack(
    out_dir: str | Path,
    codec_dir: str | Path,
    ar_pack: str | Path,
    nar_pack: str | Path,
    st_pack: str | Path | None,
    frontend_spec: Mapping[str, Any],
    tokens: str | Path,
    *,
    frontend: Any = None,
) -> Path:
    """Write the pipeline pack ``out_dir`` from trained parts.

    Args:
        codec_dir: saved codec (``exp/codec``, :func:`speechkit.codec_io.save_codec`).
        ar_pack, nar_pack: packs holding ``ar_lm`` / ``nar_lm`` (stages 4, 5).
        st_pack: pack holding ``st_frontend`` (stage 6), or ``None`` (no S2ST from speech).
        frontend_spec: the recipe's ``frontend:`` section (``{name: multilingual, ...}``).
        tokens: the phone table (``dump/tokens.txt``).
        frontend: an already built frontend of ``frontend_spec`` (saves building it again).

    Raises:
        ConfigError: the parts disagree (phone table size, codebook size, levels).
        DataError / PluginError: a part is missing or cannot be rebuilt.
    """
    from speechkit.codec_io import load_codec
    from speechkit.pack import load_pack, save_pack
    from speechkit.registry import build

    table = PhoneTable.load(tokens)
    codec = load_codec(codec_dir)
    parts = {"ar_lm": load_pack(ar_pack, kinds=["ar_lm"]), "nar_lm": load_pack(nar_pack, kinds=["nar_lm"])}
    if st_pack is not None:
        parts["st_frontend"] = load_pack(st_pack, kinds=["st_frontend"])
    context = {kind: dict(pack.context.get(kind, {})) for kind, pack in parts.items()}
    expected = {"num_phones": len(table), "codebook_size": int(codec.codebook_size),
                "num_quantizers": int(codec.num_quantizers)}
    for kind, values in context.items():
        for key, value in expected.items():
            if key in values and int(values[key]) != value:
                raise ConfigError(
                    f"{kind} was trained with {key}={values[key]}, but the pipeline has {key}={value} "
                    f"(phone table {tokens}, codec {codec_dir}). Retrain it on the current dump."
                )
    if "st_frontend" in context:
        token_list = context["st_frontend"].get("token_list")
        if token_list is not None and list(token_list) != table.tokens:
            raise ConfigError(f"st_frontend was trained with another phone table than {tokens}; retrain stage 6.")
        context["st_frontend"]["token_list"] = table.tokens  # its string API (recognize/translate) needs it
    components: dict[str, Any] = {"codec": codec, "frontend": frontend or build("frontend", dict(frontend_spec))}
    components.update({kind: pack[kind] for kind, pack in parts.items()})
    sources = {"codec": str(codec_dir), "ar_lm": str(ar_pack), "nar_lm": str(nar_pack),
               "st_frontend": None if st_pack is None else str(st_pack), "tokens": str(tokens)}
    out_dir = save_pack(out_dir, components, context, extra={"pipeline": "vallex", "sources": sources,
                                                            "tokens": TOKENS_FILE})
    table.save(out_dir / TOKENS_FILE)
    log.info("assembled pipeline pack %s (%s)", out_dir, ", ".join(components))
    return out_dir


def directory_fingerprint(path: str | Path) -> str:
    """A short hash of every file's relative path, size and modification time under ``path``
    (what a stage marker needs to notice that a pack or a model was re-trained)."""
    root = Path(path)
    digest = hashlib.sha256()
    if root.exists():
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
