"""OmniDocBench pages as (page image, markdown ground truth) pairs.

OmniDocBench ships one JSON list of pages (`OmniDocBench.json`; the demo's `OmniDocBench_demo.json`)
beside an `images/` folder. Each page's `layout_dets` are annotated blocks with a category, a
reading-order position (`order`) and their content: `text`, `latex` for display formulas (already
wrapped in `$$`), `html` and `latex` for tables. The markdown here is those blocks in reading order,
one paragraph each: titles as `#` headings, tables as their HTML (or LaTeX), formulas as `$$…$$`,
figures as image links named as the benchmark's own markdown names its crops.

What is left out, and why:
- page furniture (`PAGE_FURNITURE`: headers, footers, page numbers, page footnotes, `abandon`
  blocks): OmniDocBench's end-to-end eval never scores them, and its markdown ground truth leaves
  them out (they are exactly the blocks the annotation gives no reading-order position);
- blocks marked `ignore`, and blocks without an `order` (nowhere to put them).
`TEXT_EVAL_IGNORED` adds what the eval's text metric also skips (captions, footnotes, equation
numbers, algorithms): pass it as `skip` to get only the text that metric scores.

Blocks the annotation links as `truncated` (one paragraph split by a column or page break) are
joined into one paragraph, as the eval joins them, at the first block's position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Optional

from forge.config.errors import ProblemCollector

#: Blocks that are not page content: the eval ignores them and the ground-truth markdown omits them.
PAGE_FURNITURE = ("header", "footer", "page_number", "page_footnote", "abandon")
#: PAGE_FURNITURE plus what OmniDocBench's end-to-end text metric filters out before scoring
#: (`End2EndDataset.filtered_out_ignore` in its dataset/end2end_dataset.py).
TEXT_EVAL_IGNORED = PAGE_FURNITURE + (
    "figure_caption", "figure_footnote", "table_caption", "table_footnote",
    "code_algorithm", "code_algorithm_caption", "equation_caption",
)


@dataclass(frozen=True)
class DocPage:
    """One annotated page: its image, its markdown and OmniDocBench's page attributes."""

    image_path: Path
    markdown: str
    attributes: dict[str, Any] = field(default_factory=dict)  # data_source, language, layout, ...

    @property
    def name(self) -> str:
        """The image's file name: OmniDocBench names a prediction `<image stem>.md` after it."""
        return self.image_path.name


def _merge_truncated(blocks: list[dict], relations: list[dict]) -> list[dict]:
    """Join each chain of `truncated` blocks into one block at its first block's order."""
    by_id = {str(b.get("anno_id")): b for b in blocks}
    parent = {key: key for key in by_id}

    def root(key: str) -> str:
        while parent[key] != key:
            key = parent[key]
        return key

    for relation in relations:
        if relation.get("relation_type", relation.get("relation")) != "truncated":
            continue
        a, b = str(relation.get("source_anno_id")), str(relation.get("target_anno_id"))
        if a in by_id and b in by_id:
            parent[root(a)] = root(b)
    groups: dict[str, list[dict]] = {}
    for key, block in by_id.items():
        groups.setdefault(root(key), []).append(block)
    merged = []
    for members in groups.values():
        members.sort(key=lambda b: b["order"])
        text = ""
        for member in members:
            text = _join_truncated(text, member.get("text") or "")
        merged.append({**members[0], "text": text})
    return merged


def _join_truncated(before: str, after: str) -> str:
    """Two halves of a split paragraph. A space between two Latin words ("New" | "Mexico"), none in
    Chinese or after a hyphen: the eval itself joins with nothing, which glues English words."""
    if not before or not after:
        return before + after
    left, right = before[-1], after[0]
    latin_break = left.isascii() and (left.isalnum() or left in ",.;:!?)") and right.isascii() and right.isalnum()
    return f"{before} {after}" if latin_break else before + after


def _block_markdown(block: dict, image_stem: str, table_format: str, figures: bool) -> str:
    category = block.get("category_type")
    if category == "title":
        return f"# {block.get('text') or ''}".rstrip()
    if category == "table":
        other = "latex" if table_format == "html" else "html"
        return block.get(table_format) or block.get(other) or ""
    if category == "equation_isolated":
        latex = (block.get("latex") or block.get("text") or "").strip()
        return latex if not latex or latex.startswith("$$") else f"$$\n{latex}\n$$"
    if category == "figure":
        return f"![](./imgs/{image_stem}_{block.get('anno_id')}.jpg)" if figures else ""
    return block.get("text") or ""


def page_markdown(
    page: dict, *, skip: Collection[str] = PAGE_FURNITURE, table_format: str = "html", figures: bool = True
) -> str:
    """The markdown of one annotated page (an element of OmniDocBench's JSON list).

    `table_format` picks a table's `html` or `latex` (the other when it is missing); `figures=False`
    drops figure links, which no model can reproduce from the pixels.
    """
    if table_format not in ("html", "latex"):
        raise ValueError(f"table_format must be 'html' or 'latex', got {table_format!r}")
    blocks = [
        b for b in page.get("layout_dets", [])
        if b.get("category_type") not in skip and not b.get("ignore") and b.get("order") is not None
    ]
    blocks = _merge_truncated(blocks, page.get("extra", {}).get("relation", []))
    stem = Path(page["page_info"]["image_path"]).stem
    parts = [_block_markdown(b, stem, table_format, figures) for b in sorted(blocks, key=lambda b: b["order"])]
    return "\n\n".join(part for part in parts if part.strip())


def _read_annotations(path: Path, problems: ProblemCollector) -> list:
    fix = "point at OmniDocBench's annotation file (OmniDocBench.json, a JSON list of pages)"
    if not path.is_file():
        problems.add("omnidocbench.annotations", "no such file", value=str(path), fix=fix)
        problems.raise_if_any()
    try:
        pages = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problems.add(str(path), f"malformed JSON ({error.msg} at line {error.lineno}, column {error.colno})", fix=fix)
        problems.raise_if_any()
    if not isinstance(pages, list):
        problems.add(str(path), f"a JSON {type(pages).__name__}, not a list of pages", fix=fix)
        problems.raise_if_any()
    return pages


def _check_page(path: Path, index: int, page: Any, image_dir: Path, problems: ProblemCollector) -> bool:
    """The fields conversion needs, and the page's image on disk."""
    where = f"{path}[{index}]"
    if not isinstance(page, dict) or not isinstance(page.get("page_info"), dict):
        problems.add(where, "a page needs a page_info object", fix="each page has page_info and layout_dets")
        return False
    image = page["page_info"].get("image_path")
    if not isinstance(image, str) or not image:
        problems.add(f"{where}.page_info.image_path", "missing", fix="name the page's image file")
        return False
    if not isinstance(page.get("layout_dets"), list):
        problems.add(f"{where}.layout_dets", "must be a list of blocks", value=page.get("layout_dets"))
        return False
    if not (image_dir / Path(image).name).is_file():
        problems.add(f"{where}.page_info.image_path", f"no such image in {image_dir}", value=image,
                     fix="put OmniDocBench's images/ folder beside the JSON or pass image_dir")
        return False
    return True


def load_omnidocbench(
    annotations: str | Path,
    image_dir: Optional[str | Path] = None,
    *,
    skip: Collection[str] = PAGE_FURNITURE,
    table_format: str = "html",
    figures: bool = True,
) -> list[DocPage]:
    """Every page of an OmniDocBench annotation file, in file order, with its markdown.

    `image_dir` defaults to `images/` beside the JSON (the release's and the demo's layout). Every
    page is checked (fields, image on disk) before any is converted; all problems come as one
    ConfigError.
    """
    annotations = Path(annotations)
    image_dir = annotations.parent / "images" if image_dir is None else Path(image_dir)
    problems = ProblemCollector()
    pages = _read_annotations(annotations, problems)
    for index, page in enumerate(pages):
        _check_page(annotations, index, page, image_dir, problems)
    problems.raise_if_any()
    return [
        DocPage(
            image_path=image_dir / Path(page["page_info"]["image_path"]).name,
            markdown=page_markdown(page, skip=skip, table_format=table_format, figures=figures),
            attributes=dict(page["page_info"].get("page_attribute", {})),
        )
        for page in pages
    ]


#: The release on the Hugging Face hub: the annotation JSON at the root, beside images/.
HUB_REPO_ID = "opendatalab/OmniDocBench"
HUB_ANNOTATIONS = "OmniDocBench.json"


def download_omnidocbench(
    repo_id: str = HUB_REPO_ID,
    *,
    revision: Optional[str] = None,
    annotations: str = HUB_ANNOTATIONS,
    cache_dir: Optional[str | Path] = None,
) -> Path:
    """The release's annotation file (with images/ beside it) in the local HF cache; its path.

    Only the annotation JSON and the page images are fetched (not the PDFs the release also holds).
    Offline (HF_HUB_OFFLINE=1) this resolves from the cache or fails with huggingface_hub's message.
    """
    from huggingface_hub import snapshot_download

    root = snapshot_download(
        repo_id=repo_id,
        repo_type="dataset",
        revision=revision,
        cache_dir=None if cache_dir is None else str(cache_dir),
        allow_patterns=[annotations, "images/*"],
    )
    return Path(root) / annotations
