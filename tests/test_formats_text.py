"""Text that streams: a text file, CSV or JSONL of any size is read row by row into one list of
strings (item names made when asked), and tokens are made and cached a chunk of texts at a time."""
from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

from headstart.data.text_rows import RowNames
from headstart.modalities import load_data, load_pool


def _held(texts: list[str]) -> int:
    return sys.getsizeof(texts) + sum(sys.getsizeof(t) for t in texts)


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_a_large_file_is_held_once_as_its_texts(tmp_path, suffix):
    rows = 30_000
    path = tmp_path / f"pool{suffix}"
    line = {".txt": "{i} some words of a text", ".csv": "{i} some words of a text,{c}",
            ".jsonl": '{{"text": "{i} some words of a text", "label": "{c}"}}'}[suffix]
    header = {".txt": "", ".csv": "text,label\n", ".jsonl": ""}[suffix]
    path.write_text(header + "".join(line.format(i=i, c="ab"[i % 2]) + "\n" for i in range(rows)))
    tracemalloc.start()
    try:
        data = load_pool(str(path)) if suffix == ".txt" else load_data(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(data) == rows and data.texts[7] == "7 some words of a text"
    # the texts themselves, plus the row numbers and label codes (8 bytes each) and the growth
    # of the list: no second copy of the file, its lines or one name per row
    assert peak < 1.5 * _held(data.texts), f"peak {peak / 2**20:.1f} MiB for {_held(data.texts) / 2**20:.1f} MiB of texts"
    unit = "row" if suffix == ".csv" else "line"
    first = 2 if suffix == ".csv" else 1
    assert isinstance(data.paths, RowNames) and data.paths[10] == f"{path}:{unit} {10 + first}"


def test_row_names_behave_as_a_list(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nfirst,a\n,a\nthird,b\nfourth,b\n")
    data = load_data(str(path))
    assert data.paths == [f"{path}:row 2", f"{path}:row 4", f"{path}:row 5"]  # the empty row 3 is skipped
    assert data.skipped == [(f"{path}:row 3", "empty text")]
    assert data.subset(np.array([2, 0])).paths == [f"{path}:row 5", f"{path}:row 2"]
    joined = data.concat(data.subset(np.array([1])))
    assert joined.paths[-1] == f"{path}:row 4" and len(joined.paths) == 4


def test_tokens_are_made_and_cached_per_chunk(monkeypatch):
    from transformers import BertTokenizerFast

    import headstart.zoo.tokens as tokens
    from headstart.data import TextData

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "goal", "bank", "rain", "the"]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    texts = [" ".join(["goal", "the", "bank", "zzz"][: 1 + i % 4] * (1 + i % 3)) for i in range(12)]
    data = TextData(texts=texts, labels=np.zeros(12, dtype=np.int64), classes=["x"], name="t")
    whole, cut = tokens.tokenize(tokenizer, texts, 6)
    monkeypatch.setattr(tokens, "_CHUNK", 5)
    calls = []
    encode = tokens._encode
    monkeypatch.setattr(tokens, "_encode", lambda tok, chunk: calls.append(len(chunk)) or encode(tok, chunk))
    chunked = tokens.tokenize_data(data, tokenizer, 6)
    assert calls == [5, 5, 2]
    np.testing.assert_array_equal(chunked.tokens, whole)  # padded to the longest of all chunks
    assert chunked.notes["truncated"] == cut > 0 and chunked.notes["unknown_tokens"] > 0
    calls.clear()
    again = tokens.tokenize_data(data, tokenizer, 6)
    assert calls == [] and again.notes == chunked.notes  # every chunk from the cache
    texts[-1] = "rain"
    tokens.tokenize_data(TextData(texts=texts, labels=data.labels, classes=["x"], name="t"), tokenizer, 6)
    assert calls == [2]  # only the chunk that changed is tokenised again
