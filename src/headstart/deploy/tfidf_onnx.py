"""The TF-IDF model (zoo/tfidf.py) as an ONNX graph: texts in, the same logits out.

skl2onnx cannot convert it: its TfidfVectorizer converter refuses char_wb and replaces the
word pattern by an ASCII one (`[a-zA-Z0-9_]+`, which also keeps the one-letter words
scikit-learn drops, so bigrams across them come out wrong). So the graph is built here from
standard operators, with the same steps scikit-learn takes:

    text -> StringNormalizer (lower) -> Tokenizer (com.microsoft, regular expressions)
         -> TfIdfVectorizer (n-gram counts) -> 1 + log(tf) -> x idf -> L2 -> MatMul + bias

- word part: the tokens are Python's `(?u)\\b\\w\\w+\\b`, written as an explicit RE2 class of
  every code point Python counts as \\w (so both engines agree on every script);
- char part (char_wb): one token per character, whitespace runs turned into one space and a
  space added at both ends, so n-grams within " word " are those scikit-learn counts; n-grams
  across words hold an inner space and no vocabulary term does, so they count nothing.

The lowercasing uses the locale "C.UTF-8" (onnxruntime's default, en_US.UTF-8, is missing on
many Linux hosts and makes the session fail to load). It lowercases one character at a time,
so where Python's str.lower() looks at context (a final Greek sigma) the two can differ.
"""
from __future__ import annotations

import re
import sys
from functools import lru_cache

import numpy as np

from headstart.errors import HeadstartError

OPSET = 20          # RegexFullMatch (the char part's whitespace test) is opset 20
IR_VERSION = 10
LOCALE = "C.UTF-8"
# the settings the graph reproduces; anything else is refused rather than exported wrong
_SUPPORTED = {"strip_accents": (None,), "norm": ("l2",), "use_idf": (True,), "binary": (False,),
              "token_pattern": (r"(?u)\b\w\w+\b",), "stop_words": (None,), "max_df": (1.0,)}


def tfidf_to_onnx(model, *, locale: str = LOCALE):
    """An onnx.ModelProto of a fitted TfidfLogistic: input `text` (string, [N]), output
    `logits` (float32, [N, classes]) equal to model.logits() on the same texts."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not getattr(model, "parts", None) or model.coef is None:
        raise HeadstartError("this TF-IDF model is not fitted", hint="export a finished `headstart fit` run")
    graph = _Graph()
    text = "text"
    lowered = {}
    start = 0
    part_logits = []
    for index, part in enumerate(model.parts):
        settings = _checked_settings(part)
        source = text
        if settings.get("lowercase", True):
            if "lower" not in lowered:
                lowered["lower"] = graph.node("StringNormalizer", [text], case_change_action="LOWER",
                                              is_case_sensitive=0, locale=locale)
            source = lowered["lower"]
        builder = _word_tokens if settings["analyzer"] == "word" else _char_tokens
        tokens, pool, weights = builder(graph, source, part.vocabulary, tuple(settings["ngram_range"]))
        low, high = _gram_lengths(pool)
        counts = graph.node("TfIdfVectorizer", [tokens], mode="TFIDF", min_gram_length=low, max_gram_length=high,
                            max_skip_count=0, **_pool_attributes(pool, weights))
        tf = counts
        if settings.get("sublinear_tf", False):  # 1 + log(tf) where tf > 0 (Where never takes log(0))
            log_tf = graph.node("Add", [graph.node("Log", [counts]), graph.constant(np.float32(1.0))])
            positive = graph.node("Greater", [counts, graph.constant(np.float32(0.0))])
            tf = graph.node("Where", [positive, log_tf, counts])
        weighted = graph.node("Mul", [tf, graph.constant(part.idf.astype(np.float32))])
        squares = graph.node("ReduceSumSquare", [weighted, graph.constant(np.array([1], np.int64))], keepdims=1)
        # scikit-learn leaves an all-zero row at zero; no real norm is this small (idf >= 1)
        norm = graph.node("Max", [graph.node("Sqrt", [squares]), graph.constant(np.float32(1e-30))])
        features = graph.node("Div", [weighted, norm])
        columns = model.coef[:, start:start + len(part.vocabulary)]
        start += len(part.vocabulary)
        part_logits.append(graph.node("MatMul", [features, graph.constant(np.ascontiguousarray(
            columns.T.astype(np.float32)), name=f"coef_{index}")]))
    if start != model.coef.shape[1]:
        raise HeadstartError(f"the TF-IDF model's weights have {model.coef.shape[1]} columns but its "
                             f"vocabularies {start} terms", hint="the run's files do not belong together; refit it")
    graph.node("Sum", part_logits + [graph.constant(np.asarray(model.intercept, np.float32), name="intercept")],
               output="logits")
    made = helper.make_graph(graph.nodes, "headstart_tfidf_logistic",
                             [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
                             [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                            ["N", int(model.coef.shape[0])])],
                             initializer=[numpy_helper.from_array(v, k) for k, v in graph.initializers.items()])
    proto = helper.make_model(made, opset_imports=[helper.make_opsetid("", OPSET),
                                                   helper.make_opsetid("com.microsoft", 1)],
                              ir_version=IR_VERSION, producer_name="headstart")
    onnx.checker.check_model(proto, full_check=False)
    return proto


# -- the two tokenisations -------------------------------------------------------------------

def _word_tokens(graph, text: str, vocabulary: list[str], ngram_range: tuple[int, int]):
    """Word n-grams: tokens are runs of two or more word characters; pads are a space (no token holds one)."""
    tokens = graph.node("Tokenizer", [text], domain="com.microsoft", tokenexp=f"{_class(_word_chars())}{{2,}}",
                        pad_value=" ", mark=0, mincharnum=1)
    pool = [term.split(" ") for term in vocabulary]
    return tokens, pool, [1.0] * len(pool)


def _char_tokens(graph, text: str, vocabulary: list[str], ngram_range: tuple[int, int]):
    """char_wb n-grams: one token per character, whitespace runs as one space, a space at both ends."""
    space = _class(_space_chars())
    pieces = graph.node("Tokenizer", [text], domain="com.microsoft", tokenexp=f"{space}+|[^{space[1:-1]}]",
                        pad_value=" ", mark=0, mincharnum=1)
    is_space = graph.node("RegexFullMatch", [pieces], pattern=f"{space}+")
    one_space = graph.constant(np.array([" "], dtype=object), name="space")
    characters = graph.node("Where", [is_space, one_space, pieces])
    rows = graph.node("Shape", [text])
    column = graph.node("Expand", [graph.constant(np.array([[" "]], dtype=object), name="space_column"),
                                   graph.node("Concat", [rows, graph.constant(np.array([1], np.int64))], axis=0)])
    tokens = graph.node("Concat", [column, characters, column], axis=1)
    # a padded word shorter than the shortest n is one term of its own length (" a " for 4-grams):
    # spaces at both ends, so in this stream it too matches that word only
    pool = [list(term) for term in vocabulary]
    return tokens, pool, [1.0] * len(pool)


def _pool_attributes(pool: list[list[str]], weights: list[float]) -> dict:
    """TfIdfVectorizer's pool: n-grams ordered by length (1-grams first), each with its column."""
    order = sorted(range(len(pool)), key=lambda i: len(pool[i]))
    strings, starts, length = [], [], 0
    for i in order:
        while length < len(pool[i]):  # the start of each length's n-grams, from 1-grams on
            starts.append(len(strings))
            length += 1
        strings.extend(pool[i])
    return {"pool_strings": strings, "ngram_counts": starts, "ngram_indexes": order,
            "weights": [weights[i] for i in order]}


def _gram_lengths(pool: list[list[str]]) -> tuple[int, int]:
    lengths = [len(p) for p in pool] or [1]
    return min(lengths), max(lengths)


def _checked_settings(part) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    defaults = TfidfVectorizer().get_params()
    settings = {**defaults, **part.settings}
    if settings["analyzer"] not in ("word", "char_wb"):
        raise HeadstartError(f"TF-IDF analyzer '{settings['analyzer']}' has no ONNX export",
                             hint="refit with --tfidf-analyzer word, char or both")
    for key, allowed in _SUPPORTED.items():
        if settings.get(key) not in allowed:
            hint = ("this run was fitted before ONNX export existed (it strips accents, which ONNX cannot); "
                    "refit it with this version" if key == "strip_accents" else "refit with the default settings")
            raise HeadstartError(f"the TF-IDF setting {key}={settings.get(key)!r} cannot be expressed in ONNX",
                                 hint=hint)
    return settings


# -- character classes Python's re and RE2 (onnxruntime) agree on ------------------------------

@lru_cache(maxsize=None)
def _word_chars() -> tuple[int, ...]:
    """Every code point Python's (?u)\\w matches (letters, digits, underscore, by Python's tables)."""
    word = re.compile(r"\w")
    return tuple(c for c in range(sys.maxunicode + 1) if word.match(chr(c)))


@lru_cache(maxsize=None)
def _space_chars() -> tuple[int, ...]:
    """Every code point str.split() and \\s split on."""
    return tuple(c for c in range(sys.maxunicode + 1) if chr(c).isspace())


def _class(code_points: tuple[int, ...]) -> str:
    """An RE2 character class of these code points, as ranges."""
    ranges, first, last = [], None, None
    for c in code_points:
        if last is not None and c == last + 1:
            last = c
            continue
        if first is not None:
            ranges.append((first, last))
        first = last = c
    if first is not None:
        ranges.append((first, last))
    return "[" + "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges) + "]"


class _Graph:
    """Nodes and initializers with generated names, in the order they were added."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], {}, 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def node(self, op: str, inputs: list[str], *, output: str | None = None, domain: str = "", **attributes) -> str:
        from onnx import helper

        output = output or self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=self._name(op), domain=domain, **attributes))
        return output

    def constant(self, value, *, name: str | None = None) -> str:
        name = name or self._name("const")
        if name in self.initializers:
            name = self._name(name)
        self.initializers[name] = np.asarray(value)
        return name
