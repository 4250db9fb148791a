"""The alignment stage on a tiny dump: durations for every set, report, plots, no-op rerun."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from speechkit.align.durations import read_durations
from speechkit.bin import align
from speechkit.data.tokens import write_codes_shard
from speechkit.text.phone_table import PhoneTable

TOKENS = ["en:AH0", "en:B", "en:K", "zh:a1", "zh:n", "<sp>", "<sil>"]


def _make_recipe_dirs(root: Path) -> None:
    """data/<set>/phones, dump/tokens.txt, dump/<set>/codes.scp (codes echo the phones), codec_info."""
    table = PhoneTable(TOKENS)
    table.save(root / "dump" / "tokens.txt")
    (root / "dump" / "codec_info.json").write_text(json.dumps({"num_quantizers": 2, "codebook_size": 16,
                                                                 "frame_rate": 62.5, "sample_rate": 16000}))
    generator = torch.Generator().manual_seed(0)
    for name, count in (("train", 12), ("dev", 3)):
        lines, entries = [], []
        for index in range(count):
            tokens = [TOKENS[int(i)] for i in torch.randint(0, 5, (4,), generator=generator)] + ["<sil>"]
            durations = torch.randint(1, 4, (len(tokens),), generator=generator)
            ids = torch.tensor(table.encode(tokens))
            codes = torch.stack([ids, ids % 3]).repeat_interleave(durations, dim=1)  # [2, T]
            utt = f"{name}{index:02d}"
            lines.append(f"{utt} {' '.join(tokens)}\n")
            entries.append((utt, codes))
        (root / "data" / name).mkdir(parents=True)
        (root / "data" / name / "phones").write_text("".join(lines))
        set_dir = root / "dump" / name
        write_codes_shard(entries, set_dir / "codes.1.ark", set_dir / "codes.scp", codebook_size=16)


def test_align_stage_writes_durations_and_is_a_noop_when_rerun(tmp_path: Path) -> None:
    _make_recipe_dirs(tmp_path)
    config = tmp_path / "conf.yaml"
    config.write_text(
        "align:\n  model: {d_model: 16, conv_layers: 1, kernel_size: 3, transformer_layers: 0}\n"
        "  steps: 5\n  batch_size: 4\n  uniform_steps: 2\n  sets: [train, dev]\n  num_plots: 1\n"
    )
    argv = ["--config", str(config), "--data", str(tmp_path / "data"), "--dump", str(tmp_path / "dump"),
            "--exp", str(tmp_path / "exp")]
    assert align.main(argv) == 0
    for name in ("train", "dev"):
        durations = read_durations(tmp_path / "dump" / name / "durations")
        phones = dict(line.split(" ", 1) for line in (tmp_path / "data" / name / "phones").read_text().splitlines())
        assert set(durations) == set(phones)
        for utt, counts in durations.items():
            assert len(counts) == len(phones[utt].split()) and min(counts) >= 1
    report = json.loads((tmp_path / "exp" / "align" / "report.json").read_text())
    assert report["set"] == "dev" and "<sil>" in report["durations"]
    assert len(list((tmp_path / "exp" / "align").glob("align_*.png"))) == 1
    stamp = (tmp_path / "dump" / "train" / "durations").stat().st_mtime_ns
    model_stamp = (tmp_path / "exp" / "align" / "aligner.pt").stat().st_mtime_ns
    assert align.main(argv) == 0
    assert (tmp_path / "dump" / "train" / "durations").stat().st_mtime_ns == stamp
    assert (tmp_path / "exp" / "align" / "aligner.pt").stat().st_mtime_ns == model_stamp
