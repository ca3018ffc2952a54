"""What a server shows for each token id, and which id a shown string can stand for.

Why this is its own module: an OpenAI-style echo answers in *strings* (`tokens`, and the keys of
`top_logprobs`), and strings are lossy. llama.cpp renders special tokens, partial UTF-8 byte
tokens and (in llama-cpp-python) any token longer than its 32-byte detokenize buffer as ""; a
dict can hold a string only once, so colliding candidates overwrite each other. We therefore map
a string to an id only when the string is unique in the vocabulary (`TokenStrings`), and resolve
a shared string only to the token the server itself paired with that entry (the echoed token,
whose logprob the server writes into the dict last, so the value is known to be that token's).
Keys we cannot resolve are dropped. vLLM's `return_tokens_as_token_ids` ("token_id:123")
sidesteps all of this and is understood too. Matching echoes (`echo_alignment`) and building
view rows (`token_map`) both stand on this one vocabulary table.

The text round trip (`decode_text`, `encode_text`) lives here too: it is the same rendering
(special tokens kept, no clean-up) that the table is built from, and the text a server is sent.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable, Optional, Sequence

REPLACEMENT_CHAR = "\ufffd"
TOKEN_ID_PREFIX = "token_id:"  # vLLM's return_tokens_as_token_ids rendering
LLAMA_CPP_PIECE_BYTES = 32  # llama-cpp-python detokenizes one token into a 32-byte buffer


def normalize(text: str) -> str:
    """A token string with U+FFFD removed: HF decodes a partial UTF-8 byte token as "�",
    llama.cpp (errors="ignore") as "", vLLM as "�" or ""; without the mark they agree."""
    return text.replace(REPLACEMENT_CHAR, "")


def decode_text(tokenizer: Any, ids: Sequence[int]) -> str:
    """The text a server is sent for `ids`: special tokens written out, nothing cleaned up, so
    the server can tokenize it back to the same ids."""
    return tokenizer.decode(list(ids), skip_special_tokens=False,
                            clean_up_tokenization_spaces=False)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """The tokenizer's own split of `text`, without adding special tokens of its own."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _token_id_key(key: str) -> Optional[int]:
    if key.startswith(TOKEN_ID_PREFIX):
        try:
            return int(key[len(TOKEN_ID_PREFIX):])
        except ValueError:
            return None
    return None


class TokenStrings:
    """Every id of a tokenizer as the string a server shows for it alone, and the reverse map.

    strings[i]: decode([i]) with specials kept and U+FFFD removed.
    empty_ok: ids a server may also render as "" (special/control tokens, partial bytes, pieces
      longer than llama-cpp-python's 32-byte buffer).
    """

    def __init__(self, strings: Sequence[str], empty_ok: Iterable[int] = (),
                 bos_id: Optional[int] = None) -> None:
        self.strings = [normalize(s) for s in strings]
        self.empty_ok = frozenset(int(i) for i in empty_ok) | frozenset(
            i for i, s in enumerate(self.strings) if s == "")
        self.bos_id = bos_id
        index: dict[str, list[int]] = {}
        for i, s in enumerate(self.strings):
            index.setdefault(s, []).append(i)
        for i in sorted(self.empty_ok):
            if self.strings[i] != "":
                index.setdefault("", []).append(i)
        self._index = {s: tuple(ids) for s, ids in index.items()}

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "TokenStrings":
        """Decode each id alone (one batch call: ~0.4 s for a 49k vocabulary)."""
        size = len(tokenizer)
        strings = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        special |= {int(i) for i, tok in decoder.items() if getattr(tok, "special", False)}
        long_pieces = {i for i, s in enumerate(strings)
                       if len(s.encode("utf-8")) > LLAMA_CPP_PIECE_BYTES}
        return cls(strings, empty_ok=special | long_pieces,
                   bos_id=getattr(tokenizer, "bos_token_id", None))

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> "TokenStrings":
        """`from_tokenizer`, built once per tokenizer object (backends and checks share it)."""
        try:
            cached = _BY_TOKENIZER.get(tokenizer)
        except TypeError:  # not weak-referenceable: build every time
            return cls.from_tokenizer(tokenizer)
        if cached is None or cached[0] != len(tokenizer):
            cached = (len(tokenizer), cls.from_tokenizer(tokenizer))
            _BY_TOKENIZER[tokenizer] = cached
        return cached[1]

    def __len__(self) -> int:
        return len(self.strings)

    def show(self, token_id: int) -> str:
        """For messages: the id's string, quoted."""
        if 0 <= token_id < len(self.strings):
            return repr(self.strings[token_id])
        return f"<id {token_id} outside the vocabulary>"

    def matches(self, server_token: str, token_id: int) -> bool:
        """Does the server's string for one echoed token stand for `token_id`?"""
        as_id = _token_id_key(server_token)
        if as_id is not None:
            return as_id == token_id
        if not 0 <= token_id < len(self.strings):
            return False
        shown = normalize(server_token)
        return shown == self.strings[token_id] or (shown == "" and token_id in self.empty_ok)

    def is_unique(self, token_id: int) -> bool:
        """Does a server always show `token_id` under a string no other id has?"""
        if not 0 <= token_id < len(self.strings) or token_id in self.empty_ok:
            return False
        return len(self._index.get(self.strings[token_id], ())) == 1

    def candidates(self, key: str) -> tuple[int, ...]:
        """Every id a top_logprobs key may stand for."""
        as_id = _token_id_key(key)
        if as_id is not None:
            return (as_id,) if 0 <= as_id < len(self.strings) else ()
        return self._index.get(normalize(key), ())

    def resolve(self, key: str, paired: Optional[int] = None) -> Optional[int]:
        """The id behind a top_logprobs key, or None when it cannot be known.

        A unique string maps to its id. A shared string ("" above all) maps to `paired` — the
        token the server echoed at this entry, whose logprob it writes under its string last —
        only if that token has this string; otherwise the value under the key belongs to an
        unknown one of the candidates, and the key is dropped.
        """
        found = self.candidates(key)
        if len(found) == 1:
            return found[0]
        if paired is not None and paired in found:
            return paired
        return None


_BY_TOKENIZER: "weakref.WeakKeyDictionary[Any, tuple[int, TokenStrings]]" = (
    weakref.WeakKeyDictionary())


__all__ = ["TokenStrings", "decode_text", "encode_text", "normalize"]
