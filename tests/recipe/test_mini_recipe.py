"""The mini recipe end to end (stages 1-8), as a user runs it: `./run.sh --config conf/mini.yaml`.

The recipe directory is copied to a temporary place (as one makes a new experiment dir), so the
test leaves the checkout clean. The venv running the tests is the one the recipe activates.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _recipe_copy(tmp_path: Path) -> Path:
    egs = tmp_path / "egs"
    shutil.copytree(REPO / "egs" / "TEMPLATE", egs / "TEMPLATE")
    shutil.copytree(REPO / "egs" / "vallex_zh_en", egs / "vallex_zh_en",
                    ignore=shutil.ignore_patterns("data", "dump", "exp"))
    return egs / "vallex_zh_en"


def _run(recipe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SPEECHKIT_SKIP_INSTALL="1", SPEECHKIT_VENV=sys.prefix)
    result = subprocess.run(["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"run.sh {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def mini_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = _recipe_copy(tmp_path_factory.mktemp("recipe"))
    _run(recipe, "--config", "conf/mini.yaml", "--stage", "1", "--stop-stage", "8", "--nj", "2")
    return recipe


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in sorted(root.rglob("*")) if p.is_file()}


def test_stage1_builds_valid_bilingual_data(mini_recipe: Path):
    from speechkit.data.datadir import DataDir, validate_datadir

    speakers: dict[str, set[str]] = {}
    for name in ("train", "dev", "test"):
        validate_datadir(mini_recipe / "data" / name, check_audio=True, sample_rate=16000)
        data = DataDir.load(mini_recipe / "data" / name)
        speakers[name] = set(data.utt2spk.values())
        for spk, utts in data.spk2utt.items():
            assert {data.utt2lang[u] for u in utts} == {"en", "zh"}, f"{spk} must speak both languages"
    assert not speakers["train"] & speakers["test"] and not speakers["train"] & speakers["dev"]


def test_stage2_writes_phones_and_token_list(mini_recipe: Path):
    from speechkit.data.datadir import read_table

    tokens = (mini_recipe / "dump" / "tokens.txt").read_text().split("\n")
    symbols = {line.split()[0] for line in tokens if line.strip()}
    for name in ("train", "dev", "test"):
        phones = read_table(mini_recipe / "data" / name / "phones")
        text = read_table(mini_recipe / "data" / name / "text")
        assert set(phones) == set(text)
        assert all(set(p.split()) <= symbols for p in phones.values())


def test_stage3_writes_codes_for_every_utterance(mini_recipe: Path):
    import kaldiio

    from speechkit.data.datadir import read_table

    info = json.loads((mini_recipe / "dump" / "codec_info.json").read_text())
    for name in ("train", "dev", "test"):
        wavs = read_table(mini_recipe / "data" / name / "wav.scp")
        codes = kaldiio.load_scp(str(mini_recipe / "dump" / name / "codes.scp"))
        assert set(codes.keys()) == set(wavs)
        first = codes[sorted(wavs)[0]]
        assert first.shape[0] == info["num_quantizers"] and first.max() < info["codebook_size"]
    assert (mini_recipe / "exp" / "codec" / "config.yaml").is_file()


def test_stages4_to_6_save_loadable_packs(mini_recipe: Path):
    from speechkit.pack import load_pack

    for kind, name in (("ar_lm", "ar"), ("nar_lm", "nar"), ("st_frontend", "st")):
        pack = load_pack(mini_recipe / "exp" / name / "pack")
        assert pack[kind] is not None and (mini_recipe / "exp" / name / "config.yaml").is_file()
        assert (mini_recipe / "exp" / name / "resume.sh").is_file()
    gap = json.loads((mini_recipe / "exp" / "ar" / "text_use_gap.json").read_text())
    assert "gap" in json.dumps(gap)
    assert (mini_recipe / "dump" / "train" / "durations").is_file()


def test_stage7_synthesises_every_task(mini_recipe: Path):
    import soundfile as sf

    tasks = {p.name for p in (mini_recipe / "exp" / "infer").iterdir() if (p / "items.jsonl").is_file()}
    assert {"ground_truth", "resynth", "zs_en", "zs_zh", "xl_zh2en", "xl_en2zh", "s2st_oracle_zh2en"} <= tasks
    items = [json.loads(line) for line in (mini_recipe / "exp" / "infer" / "xl_zh2en" / "items.jsonl").open()]
    assert items and all(item["lang"] == "en" for item in items)
    made = [item for item in items if item["wav"]]
    assert made, "no cross-lingual output was synthesised"
    info = sf.info(str(mini_recipe / made[0]["wav"]))  # paths are relative to the recipe dir
    assert info.samplerate == 16000 and info.frames > 0


def test_stage8_writes_results_from_metrics(mini_recipe: Path):
    results = (mini_recipe / "RESULTS.md").read_text()
    assert "| xl_zh2en" in results and "Target checks" in results and "conf/mini.yaml" in results
    metrics = json.loads((mini_recipe / "exp" / "score" / "zs_en" / "metrics.json").read_text())
    assert metrics["n"] >= 1


def test_rerun_is_a_no_op(mini_recipe: Path):
    before = {k: v for k, v in _snapshot(mini_recipe).items() if not k.startswith("exp/logs") and k != "RESULTS.md"}
    _run(mini_recipe, "--config", "conf/mini.yaml", "--stage", "1", "--stop-stage", "8", "--nj", "2")
    after = {k: v for k, v in _snapshot(mini_recipe).items() if not k.startswith("exp/logs") and k != "RESULTS.md"}
    assert before == after


def test_bad_options_fail_clearly(mini_recipe: Path):
    env = dict(os.environ, SPEECHKIT_SKIP_INSTALL="1", SPEECHKIT_VENV=sys.prefix)
    result = subprocess.run(["./run.sh", "--stgae", "2"], cwd=mini_recipe, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "unknown option --stgae" in result.stderr
    result = subprocess.run(
        ["./run.sh", "--config", "conf/mini.yaml", "--stage", "3", "--stop-stage", "3", "--", "codec.num_quantiserz=4"],
        cwd=mini_recipe, env=env, capture_output=True, text=True,
    )
    assert result.returncode != 0 and "num_quantizers" in result.stdout + result.stderr


def test_the_sampling_sweep_tool_runs_on_the_recipe(mini_recipe: Path):
    """tools/sweep_sampling.py (docs/recipes.md) on the finished mini recipe: a table of two settings,
    and a bad setting is one clear message with exit code 2."""
    tool = [sys.executable, str(REPO / "tools" / "sweep_sampling.py"), "--recipe", str(mini_recipe), "--config",
            "conf/mini.yaml", "--tasks", "zs_en", "--max-items", "1", "--out", "exp/sweep_smoke", "--name", "smoke"]
    result = subprocess.run([*tool, "--setting", "top_k=1", "--setting", "top_k=1,precision=int8"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads((mini_recipe / "exp" / "sweep_smoke" / "smoke_sweep.json").read_text())
    assert [row["setting"] for row in rows] == [{"top_k": 1}, {"top_k": 1, "precision": "int8"}]
    assert all("wer_zs_en" in row and "sim_margin_zs_en" in row for row in rows)
    bad = subprocess.run([*tool, "--setting", "temperature=-1"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "temperature must be >= 0" in bad.stderr and "Traceback" not in bad.stderr
