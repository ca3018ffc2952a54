"""`task=omnidocbench`: OmniDocBench page images → their annotated markdown.

Pages and markdown come from `forge.data.ocr.omnidocbench` (the annotation's blocks in reading
order, page furniture left out). OmniDocBench ships one set of pages and no train/validation split,
so the split here is a seeded hash of each page's image name: a page is a validation page when its
hash falls below `validation_fraction`. That depends on nothing but the name and `split_seed`, so
the same pages are held out on every machine and in every file order, and a page keeps its side when
pages are added (the hub release grows between versions).

Images load lazily and are scaled down to `task.max_pixels` (what a Qwen-VL processor would keep
anyway), so a split holds no more pixels than the model sees. Metrics: OmniDocBench's text measure,
the normalised edit distance (primary; lower is better), and edit similarity (rapidfuzz).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from functools import partial
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from forge.config.errors import ConfigError, ConfigProblem
from forge.data.ocr.omnidocbench import HUB_ANNOTATIONS, HUB_REPO_ID, DocPage, download_omnidocbench, load_omnidocbench
from forge.data.pages import PagePairs, PageToMarkdownHandler
from forge.data.prompted import EVAL_SET
from forge.eval.ocr_metrics import ocr_metrics

TABLE_FORMATS = ("html", "latex")
#: The loader's key for the annotation file; a task reports it as the config key that names it.
_LOADER_FILE_KEY = "omnidocbench.annotations"


def split_position(name: str, split_seed: int) -> float:
    """A page's place in [0, 1): BLAKE2b of the seed and its name, the same in every process
    (Python's own hash() is salted per process)."""
    digest = hashlib.blake2b(f"forge-omnidocbench/{split_seed}/{name}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def load_page_image(path: Path, max_pixels: int) -> Image.Image:
    """The page as RGB, scaled down (aspect kept) to at most about `max_pixels` pixels."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    scale = math.sqrt(max_pixels / (image.width * image.height))
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


class OmniDocBenchHandler(PageToMarkdownHandler):
    """A local OmniDocBench folder or the hub release, split by a seeded hash of the page names."""

    primary_metric = "normalized_edit_distance"
    greater_is_better = False
    metric_names: tuple[str, ...] = ("normalized_edit_distance", "edit_similarity")

    def __init__(self, name: str, hub_repo: str = HUB_REPO_ID, hub_revision: Optional[str] = None,
                 annotations: Optional[str] = None, validation_fraction: float = 0.2, split_seed: int = 0,
                 table_format: str = "html", figures: bool = False, **common: Any) -> None:
        super().__init__(name=name, **common)
        self.hub_repo = hub_repo
        self.hub_revision = hub_revision
        self.annotations = annotations
        self.validation_fraction = validation_fraction
        self.split_seed = split_seed
        self.table_format = table_format
        self.figures = figures
        self._pages: Optional[list[DocPage]] = None

    def source(self) -> str:
        if self.data_dir is not None:
            return f"omnidocbench({self.data_dir})"
        return f"hub:{self.hub_repo}@{self.hub_revision or 'main'}"

    def annotation_file(self) -> Path:
        """The annotation JSON: `annotations` in data_dir, the only *.json there, or the hub's."""
        if self.data_dir is None:
            return download_omnidocbench(self.hub_repo, revision=self.hub_revision,
                                         annotations=self.annotations or HUB_ANNOTATIONS)
        folder = Path(self.data_dir).expanduser()
        if self.annotations is not None:
            return folder / self.annotations
        found = sorted(folder.glob("*.json"))
        if len(found) != 1:
            raise ConfigError(ConfigProblem(
                key="task.annotations", value=None,
                message=f"{len(found)} *.json files in {folder} ({[p.name for p in found][:5]}): which one "
                        "holds the annotation is not clear",
                fix="set task.annotations to the annotation file's name (e.g. OmniDocBench.json)"))
        return found[0]

    def doc_pages(self) -> list[DocPage]:
        """Every annotated page with its markdown, loaded once."""
        if self._pages is None:
            self._pages = load_omnidocbench(self.annotation_file(), table_format=self.table_format,
                                            figures=self.figures)
        return self._pages

    def validate(self) -> list[ConfigProblem]:
        """The table format, and a local folder's annotation file and images (the hub release is
        checked when downloaded)."""
        problems = super().validate()
        if self.table_format not in TABLE_FORMATS:
            problems.append(ConfigProblem(key="task.table_format", value=self.table_format,
                                          message=f"must be one of {', '.join(TABLE_FORMATS)}",
                                          fix="set task.table_format=html (OmniDocBench's own ground truth)"))
            return problems
        if self.data_dir is None:
            return problems
        if not Path(self.data_dir).expanduser().is_dir():
            return problems + [ConfigProblem(
                key="task.data_dir", value=self.data_dir, message="no such folder",
                fix="point at a folder holding OmniDocBench's annotation JSON beside images/, or set "
                    "task.data_dir=null to download the release from the hub")]
        try:
            self.doc_pages()
        except ConfigError as error:
            problems += [_as_task_problem(p) for p in error.problems]
        return problems

    def load_splits(self) -> dict[str, PagePairs]:
        pages = self.doc_pages()
        held_out = [split_position(p.name, self.split_seed) < self.validation_fraction for p in pages]
        splits = {"train": [p for p, v in zip(pages, held_out) if not v],
                  EVAL_SET: [p for p, v in zip(pages, held_out) if v]}
        empty = [split for split, chosen in splits.items() if not chosen]
        if empty:
            raise ConfigError(ConfigProblem(
                key="task.validation_fraction", value=self.validation_fraction,
                message=f"leaves the {' and '.join(empty)} split of {len(pages)} page(s) empty "
                        f"(split_seed={self.split_seed})",
                fix="choose a fraction nearer 0.5, or another task.split_seed for a small folder"))
        return {split: PagePairs([partial(load_page_image, p.image_path, self.max_pixels) for p in chosen],
                                 [p.markdown for p in chosen])
                for split, chosen in splits.items()}

    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        return ocr_metrics(predictions, references, which=self.metric_names)


def _as_task_problem(problem: ConfigProblem) -> ConfigProblem:
    """The loader's problem with the annotation file, renamed to the key that names it."""
    if problem.key != _LOADER_FILE_KEY:
        return problem
    return dataclasses.replace(problem, key="task.annotations",
                               fix="set task.annotations to a file in task.data_dir, or leave it null")
