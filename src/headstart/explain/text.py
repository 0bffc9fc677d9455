"""Text explanations: per-word attributions rendered over the original text.

Integrated Gradients runs on the input embeddings (Captum's LayerIntegratedGradients, from
the embedding of padding tokens to the text's), occlusion drops one token at a time (Captum's
FeatureAblation, the token replaced by padding), and TF-IDF + logistic regression is linear,
so its exact attribution is each n-gram's tf-idf value times its class weight. Token scores
are summed into the words they belong to, via the tokenizer's own offsets, so the report
highlights words of the text as written, not word pieces.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

from headstart.explain.registry import register_method, weights_frozen

IG_STEPS = 24
Segments = list[tuple[str, float | None]]  # pieces of the text in order; None: not scored


def _embedding_layer(model) -> nn.Module | None:
    """The token-embedding layer of a text classifier's encoder (a transformer's input
    embeddings, or the embedding bag's table)."""
    encoder = getattr(getattr(model, "backbone", None), "model", None)
    if encoder is None:
        return None
    getter = getattr(encoder, "get_input_embeddings", None)
    layer = getter() if callable(getter) else getattr(encoder, "embeddings", None)
    return layer if isinstance(layer, nn.Embedding) else None


def _needs_embeddings(model) -> str | None:
    return None if _embedding_layer(model) is not None else "the model has no token-embedding layer"


def _ids(model, data, index: int) -> torch.Tensor:
    """One text's token ids, (1, L) without the padding, on the model's device."""
    row = np.asarray(data.inputs[index])
    length = int((row >= 0).sum())
    return torch.from_numpy(row[:max(1, length)].astype(np.int64))[None].to(next(model.parameters()).device)


def _baseline_ids(model, ids: torch.Tensor) -> torch.Tensor:
    """The same length, every ordinary token replaced by padding; [CLS]/[SEP] kept."""
    tokenizer = model.backbone.tokenizer
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=ids.dtype, device=ids.device)
    keep = torch.isin(ids, special)
    return torch.where(keep, ids, torch.full_like(ids, model.backbone.pad_id))


@register_method("text", "ig", applies=_needs_embeddings,
                 summary="Integrated Gradients on the token embeddings, from padding to the text")
def integrated_gradients(model, data, requests: list[tuple[int, int]], *, steps: int = IG_STEPS,
                         **_options) -> list[Segments]:
    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(model, _embedding_layer(model))
    out = []
    with torch.enable_grad(), weights_frozen(model):  # gradients to the embeddings, none to the weights
        model.eval()
        for index, cls in requests:
            ids = _ids(model, data, index)
            attribution = lig.attribute(ids, baselines=_baseline_ids(model, ids), target=cls, n_steps=steps,
                                        internal_batch_size=steps)
            scores = attribution[0].sum(-1).detach().float().cpu().numpy()
            out.append(word_segments(model, data, index, ids[0].cpu().numpy(), scores))
    return out


@register_method("text", "occlusion", applies=_needs_embeddings,
                 summary="occlusion: how much the class score drops when one token is replaced by padding")
def occlusion(model, data, requests: list[tuple[int, int]], **_options) -> list[Segments]:
    from captum.attr import FeatureAblation

    ablation = FeatureAblation(model)
    out = []
    with torch.no_grad():
        model.eval()
        for index, cls in requests:
            ids = _ids(model, data, index)
            attribution = ablation.attribute(ids, baselines=_baseline_ids(model, ids), target=cls,
                                             perturbations_per_eval=16)
            out.append(word_segments(model, data, index, ids[0].cpu().numpy(), attribution[0].float().cpu().numpy()))
    return out


def _is_linear_tfidf(model) -> str | None:
    return None if hasattr(model, "word_scores") and hasattr(model, "coef") else "it is not a TF-IDF model"


@register_method("text", "linear", applies=_is_linear_tfidf,
                 summary="exact for a linear model: each n-gram's tf-idf value times its class weight")
def linear_terms(model, data, requests: list[tuple[int, int]], **_options) -> list[Segments]:
    out = []
    for index, cls in requests:  # word and character n-grams alike, shared out to the words they cover
        text = data.texts[index]
        spans, scores = model.word_scores(text, cls)
        out.append(_segments(text, spans, scores))
    return out


# -- from token scores to words of the text ------------------------------------------------------

def word_segments(model, data, index: int, ids: np.ndarray, scores: np.ndarray) -> Segments:
    """Token scores summed per word of the original text (fast tokenizers give character
    offsets); where the text cannot be aligned, the tokens themselves are shown."""
    text = data.texts[index]
    tokenizer = model.backbone.tokenizer
    encoded = tokenizer(text, truncation=True, max_length=len(ids), return_offsets_mapping=True) \
        if getattr(tokenizer, "is_fast", False) else None
    if encoded is None or list(encoded["input_ids"]) != [int(i) for i in ids]:
        tokens = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
        return _normalise([(t + " ", float(s)) for t, s in zip(tokens, scores)])
    words: dict[int, list] = {}
    for position, word in enumerate(encoded.word_ids()):
        if word is None:
            continue  # [CLS], [SEP]: no text of their own
        start, end = encoded["offset_mapping"][position]
        span = words.setdefault(word, [start, end, 0.0])
        span[0], span[1] = min(span[0], start), max(span[1], end)
        span[2] += float(scores[position])
    ordered = sorted(words.values())
    return _segments(text, [(s, e) for s, e, _ in ordered], np.array([v for _, _, v in ordered]))


def _segments(text: str, spans: list[tuple[int, int]], scores: np.ndarray) -> Segments:
    """The whole text as pieces: scored words, and the unscored text between and after them
    (a truncated text's tail is shown, unscored)."""
    out, cursor = [], 0
    for (start, end), score in zip(spans, scores):
        if start > cursor:
            out.append((text[cursor:start], None))
        out.append((text[start:end], float(score)))
        cursor = end
    if cursor < len(text):
        out.append((text[cursor:], None))
    return _normalise(out)


def _normalise(segments: Segments) -> Segments:
    top = max((abs(s) for _, s in segments if s is not None), default=0.0)
    return [(piece, None if s is None else (round(s / top, 4) if top > 0 else 0.0)) for piece, s in segments]


def top_words(segments: Segments, k: int = 3) -> list[str]:
    """The k words with the highest (positive) scores: what tests and summaries name."""
    scored = sorted(((s, p.strip()) for p, s in segments if s is not None and p.strip()), reverse=True)
    return [word for _, word in scored[:k]]
