"""Page prompts as OpenAI chat messages: the wire form of a page for a server that reads images.

Why its own module: the task states the prompt once (`PageToMarkdownHandler.page_messages`: the
chat messages with an `{"type": "image"}` part where its template puts the page); a chat server is
sent those messages with that part replaced by the page as a PNG data URL, the `image_url` part that
OpenAI's API, vLLM, llama.cpp's server and `transformers serve` all accept. The PNG bytes are the
exact pixels the student was given (lossless), so the server sees the same page.
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

from forge.teachers.backends.base import TeacherBackendError


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def with_page(messages: Sequence[dict[str, Any]], png: bytes) -> list[dict[str, Any]]:
    """`messages` with each `{"type": "image"}` part replaced by the page; exactly one is required."""
    filled, count = [], 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image":
                    parts.append({"type": "image_url", "image_url": {"url": png_data_url(png)}})
                    count += 1
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        filled.append(message)
    if count != 1:
        raise TeacherBackendError(f"a page prompt must hold exactly one image part, this one holds {count}")
    return filled


def page_conversations(vision: Any, rows: int) -> list[list[dict[str, Any]]]:
    """Each prompt row's chat messages with its page, from `VisionInputs` (pages and messages)."""
    pages, messages = getattr(vision, "pages", None), getattr(vision, "messages", None)
    if pages is None or messages is None or len(pages) != rows or len(messages) != rows:
        have = "no pages" if pages is None else ("no chat messages" if messages is None else
                                                f"{len(pages)} page(s) and {len(messages)} message list(s)")
        raise TeacherBackendError(f"page prompts for a chat server need each row's page and its chat messages; "
                                  f"got {have} for {rows} prompt(s) (the task's collator carries them: "
                                  "`<prompt>_messages` and `pages`)")
    return [with_page(m, p) for m, p in zip(messages, pages)]


__all__ = ["page_conversations", "png_data_url", "with_page"]
