"""Model packs: save/load round trip through the registry, safety, and missing-plugin errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from speechkit.errors import ConfigError, DataError, PluginError
from speechkit.interfaces import ARLanguageModel, Codec
from speechkit.interfaces.lm import ARGeneration
from speechkit.pack import load_pack, read_manifest, save_pack
from speechkit.registry import AR_LM, CODEC


class TinyAR(nn.Module, ARLanguageModel):
    """Bigram LM over level-1 codes (last class = end of sentence); phones are ignored."""

    @dataclasses.dataclass
    class Config:
        hidden: int = 8
        max_new: int = 6

    def __init__(self, config: "TinyAR.Config", *, codebook_size: int, **context) -> None:
        nn.Module.__init__(self)
        ARLanguageModel.__init__(self, config)
        self.codebook_size = codebook_size
        self.embed = nn.Embedding(codebook_size + 1, config.hidden)
        self.out = nn.Linear(config.hidden, codebook_size + 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        codes = batch["codes"]  # [B, T]
        logits = self.out(self.embed(codes[:, :-1]))  # [B, T-1, K+1]
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), codes[:, 1:].flatten())
        return {"loss": loss, "logits": logits}

    @torch.no_grad()
    def generate(self, phones, phone_langs, prompt_codes, target_lang, **sampling) -> torch.Tensor:
        previous, new = int(prompt_codes[-1]), []
        for _ in range(self.config.max_new):
            previous = int(self.out(self.embed(torch.tensor(previous))).argmax())
            if previous == self.codebook_size:
                break
            new.append(previous)
        return torch.tensor(new, dtype=torch.long)

    def generate_batch(self, phones, phone_lens, phone_langs, prompt_codes, prompt_lens, target_langs,
                       **sampling) -> ARGeneration:
        codes = [self.generate(phones[b], phone_langs[b], prompt_codes[b, : prompt_lens[b]], int(target_langs[b]))
                 for b in range(len(phones))]
        return ARGeneration(codes=codes, stop_reasons=["eos" if len(c) < self.config.max_new else "max_length"
                                                       for c in codes])


class TinyCodec(Codec):
    """Quantises samples to ``levels`` steps; its 'trained' state is a stored scale (own save/load)."""

    @dataclasses.dataclass
    class Config:
        levels: int = 4
        shape: tuple[int, int] = (1, 2)

    def __init__(self, config: "TinyCodec.Config", **context) -> None:
        super().__init__(config)
        self.scale = 1.0

    sample_rate = property(lambda self: 8000)
    frame_rate = property(lambda self: 8000.0)
    num_quantizers = property(lambda self: 1)
    codebook_size = property(lambda self: self.config.levels)

    def encode(self, wav):
        return ((wav / self.scale + 1) / 2 * (self.config.levels - 1)).round().long().clamp(0, self.config.levels - 1)[None]

    def decode(self, codes):
        return (codes[0].float() / (self.config.levels - 1) * 2 - 1) * self.scale

    def save(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "scale.txt").write_text(str(self.scale))

    def load(self, directory):
        self.scale = float((Path(directory) / "scale.txt").read_text())


@pytest.fixture
def registered():
    AR_LM.register("tiny_test_ar")(TinyAR)
    CODEC.register("tiny_test_codec")(TinyCodec)
    yield
    AR_LM._classes.pop("tiny_test_ar", None)
    CODEC._classes.pop("tiny_test_codec", None)


def make_components():
    torch.manual_seed(0)
    ar = AR_LM.build({"name": "tiny_test_ar", "hidden": 6}, codebook_size=5)
    codec = CODEC.build({"name": "tiny_test_codec", "levels": 8})
    codec.scale = 0.5
    return ar, codec


def test_round_trip_rebuilds_by_name_with_the_same_weights_and_outputs(tmp_path, registered):
    ar, codec = make_components()
    path = save_pack(tmp_path / "pack", {"ar_lm": ar, "codec": codec},
                     context={"ar_lm": {"codebook_size": 5}}, extra={"steps": 20})
    manifest = read_manifest(path)
    assert manifest["components"]["ar_lm"] == {"name": "tiny_test_ar", "hidden": 6, "max_new": 6}
    assert manifest["components"]["codec"]["shape"] == [1, 2]
    assert manifest["versions"]["speechkit"] and manifest["origins"]["ar_lm"]["package"] == "runtime"
    assert yaml.safe_load((path / "pack.yaml").read_text())["extra"] == {"steps": 20}
    assert torch.load(path / "ar_lm.pt", weights_only=True).keys() == ar.state_dict().keys()

    pack = load_pack(path)
    loaded = pack["ar_lm"]
    assert isinstance(loaded, TinyAR) and loaded is not ar and not loaded.training
    for name, tensor in ar.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    prompt = torch.tensor([1, 2, 3])
    assert torch.equal(loaded.generate(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), prompt, 0),
                       ar.generate(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), prompt, 0))
    assert pack["codec"].scale == 0.5 and pack["codec"].config.levels == 8
    assert pack.extra == {"steps": 20} and pack.context == {"ar_lm": {"codebook_size": 5}}
    only_codec = load_pack(path, kinds=["codec"])
    assert list(only_codec.components) == ["codec"]
    with pytest.raises(PluginError, match="no 'ar_lm' component"):
        only_codec["ar_lm"]


def test_saving_again_replaces_the_pack_atomically(tmp_path, registered):
    ar, codec = make_components()
    save_pack(tmp_path / "pack", {"ar_lm": ar, "codec": codec}, context={"ar_lm": {"codebook_size": 5}})
    save_pack(tmp_path / "pack", {"codec": codec})
    assert not (tmp_path / "pack" / "ar_lm.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack"]  # no staging leftovers


def test_missing_plugin_is_a_plugin_error_naming_it(tmp_path, registered):
    ar, codec = make_components()
    path = save_pack(tmp_path / "pack", {"ar_lm": ar}, context={"ar_lm": {"codebook_size": 5}})
    manifest = read_manifest(path)
    manifest["components"]["ar_lm"]["name"] = "fancy_ar_from_elsewhere"
    manifest["origins"]["ar_lm"] = {"package": "speechkit-fancy", "version": "1.2"}
    (path / "pack.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(PluginError, match="fancy_ar_from_elsewhere.*pip install speechkit-fancy"):
        load_pack(path)


def test_unregistered_components_and_bad_packs_are_clear_errors(tmp_path, registered):
    with pytest.raises(PluginError, match="not a registered ar_lm"):
        save_pack(tmp_path / "p", {"ar_lm": nn.Linear(2, 2)})
    with pytest.raises(PluginError, match="Unknown component kind 'acoustic_lm'"):
        save_pack(tmp_path / "p", {"acoustic_lm": nn.Linear(2, 2)})
    ar, _ = make_components()
    with pytest.raises(ConfigError, match="context given for"):
        save_pack(tmp_path / "p", {"ar_lm": ar}, context={"codec": {}})
    with pytest.raises(DataError, match="not a model pack"):
        load_pack(tmp_path)
    path = save_pack(tmp_path / "pack", {"ar_lm": ar}, context={"ar_lm": {"codebook_size": 5}})
    manifest = read_manifest(path)
    manifest["context"]["ar_lm"]["codebook_size"] = 7  # weights no longer fit
    (path / "pack.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(DataError, match="does not fit"):
        load_pack(path)


def test_weights_never_unpickle_code(tmp_path, registered):
    ar, _ = make_components()
    path = save_pack(tmp_path / "pack", {"ar_lm": ar}, context={"ar_lm": {"codebook_size": 5}})

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"embed.weight": Evil()}, path / "ar_lm.pt")
    with pytest.raises(DataError, match="Refusing .*ar_lm.pt.*weights_only"):
        load_pack(path)


def test_damaged_packs_are_data_errors_that_say_so(tmp_path, registered):
    """Damage fails in many ways (an empty .pt, a component's own reader, bytes that are not UTF-8):
    each is a DataError saying the pack is damaged, never a raw traceback."""
    ar, codec = make_components()
    path = save_pack(tmp_path / "pack", {"ar_lm": ar, "codec": codec}, context={"ar_lm": {"codebook_size": 5}})
    (path / "ar_lm.pt").write_bytes(b"")  # EOFError with no message
    with pytest.raises(DataError, match=r"ar_lm.pt.*\(EOFError\).*damaged"):
        load_pack(path, kinds=["ar_lm"])
    (path / "codec" / "scale.txt").write_text("not a number")  # ValueError in TinyCodec.load
    with pytest.raises(DataError, match=r"its codec/ does not load \(ValueError: .*\).*damaged"):
        load_pack(path, kinds=["codec"])
    (path / "pack.yaml").write_bytes((path / "pack.yaml").read_bytes()[:40] + b"\xcf\xff")
    with pytest.raises(DataError, match="Cannot parse .*pack.yaml.*damaged"):
        load_pack(path)
