"""Tokenisation, done once per (tokenizer, max length, texts) and cached on disk.

Token ids are int32 (N, L), padded with -1 to the longest text: the padding doubles as the
attention mask, so one array is a text model's whole input. Tokenising also counts the tokens
the tokenizer could only call unknown ([UNK]): a script its vocabulary does not cover reaches
the model as a row of identical ids, and the data summary says so.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np

# Bump when the token cache layout changes, so stale files are never read.
_TOKEN_CACHE_FORMAT = 3  # 2: the unknown-token counts; 3: one file per chunk of texts
# Texts per tokenised chunk: the tokenizer's output for 8,192 texts is a few tens of MB of Python
# ints, where a million texts at once would be gigabytes.
_CHUNK = 8192


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[np.ndarray, int]:
    """(int32 ids (N, L) padded with -1 to the longest text, number of texts truncated)."""
    return _padded_ids(tokenizer, _encode(tokenizer, texts), max_length)


def unknown_tokens(tokenizer, encoded: list[list[int]]) -> tuple[int, int]:
    """(tokens mapped to the unknown token, tokens counted): over whole texts (before any
    truncation), special tokens ([CLS], [SEP], padding) not counted. (0, n) for a tokenizer
    without an unknown token (byte-level BPE covers every string)."""
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    unknown = tokenizer.unk_token_id
    counted = sum(1 for ids in encoded for i in ids if i not in special)
    if unknown is None:
        return 0, counted
    return sum(1 for ids in encoded for i in ids if i == unknown), counted


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # untruncated on purpose (to count); its length warning is noise
    if not len(texts):  # the fast tokenizers fail on an empty batch (auto's pilots prepare an empty test part)
        return []
    return tokenizer(list(texts), truncation=False, add_special_tokens=True)["input_ids"]


def _padded_ids(tokenizer, encoded: list[list[int]], max_length: int) -> tuple[np.ndarray, int]:
    truncated = sum(len(ids) > max_length for ids in encoded)
    longest = max((min(len(ids), max_length) for ids in encoded), default=1)
    out = np.full((len(encoded), max(1, longest)), -1, dtype=np.int32)
    for i, ids in enumerate(encoded):
        if len(ids) > max_length:
            # keep the closing special token ([SEP] / </s>) the model was trained to see
            ids = ids[:max_length - 1] + ids[-1:] if tokenizer.sep_token_id is not None else ids[:max_length]
        out[i, :len(ids)] = ids
    return out, truncated


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = backend.to_str()
    else:  # slow tokenizers: the vocabulary and the class define the mapping
        state = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def tokenize_data(data, tokenizer, max_length: int):
    """Tokenise once, a chunk of texts at a time: the tokenizer's Python lists of ids exist for one
    chunk only, and each chunk's ids are cached on disk by tokenizer, max length and the chunk's
    texts (a grown file or an interrupted run reuses the chunks already done)."""
    from headstart.data.cache import cache_dir, load_arrays, save_arrays

    head = json.dumps([_TOKEN_CACHE_FORMAT, tokenizer_fingerprint(tokenizer), max_length]).encode()
    parts, truncated, unknown, counted = [], 0, 0, 0
    for start in range(0, len(data.texts), _CHUNK):
        texts = data.texts[start:start + _CHUNK]
        key = hashlib.sha256(head)
        for text in texts:
            key.update(text.encode("utf-8", "replace") + b"\x00")
        path = cache_dir() / "tokens" / f"{key.hexdigest()[:32]}.npz"
        chunk = load_arrays(path)
        if chunk is None:
            encoded = _encode(tokenizer, texts)
            ids, cut = _padded_ids(tokenizer, encoded, max_length)
            chunk = {"tokens": ids, "truncated": np.array(cut), "unknown": np.array(unknown_tokens(tokenizer, encoded))}
            save_arrays(path, **chunk)
        parts.append(chunk["tokens"])
        truncated += int(chunk["truncated"])
        unknown, counted = unknown + int(chunk["unknown"][0]), counted + int(chunk["unknown"][1])
    tokens = _joined(parts)
    return replace(data, tokens=tokens, notes={**data.notes, "truncated": truncated, "max_length": max_length,
                                               "unknown_tokens": unknown, "counted_tokens": counted})


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """Chunks padded to their own longest text, as one array padded (-1) to the longest of all."""
    if len(parts) == 1:
        return parts[0]
    out = np.full((sum(len(p) for p in parts), max((p.shape[1] for p in parts), default=1)), -1, dtype=np.int32)
    row = 0
    for part in parts:
        out[row:row + len(part), :part.shape[1]] = part
        row += len(part)
    return out
