"""Texts: CSV/JSONL rows or class folders of .txt files; Hugging Face encoders, the embedding
bag and TF-IDF; tokenised once and cached."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from headstart.data import TextData
from headstart.data.shards import is_shard_spec, load_text_shards, shard_role
from headstart.data.sources import is_image_file
from headstart.data.table_sources import is_table, load_text_table_file, table_role
from headstart.data.text_sources import (csv_is_text, folder_is_text, load_text_folder, load_text_pool,
                                         load_text_table)
from headstart.errors import HeadstartError
from headstart.inputs import read_text_lines
from headstart.files import atomic_dir
from headstart.heads import Classifier
from headstart.model_io import load_module_weights, register_model_format, save_module_weights
from headstart.modalities.base import Inputs, LoadOptions, Modality, register_modality
from headstart.train.batches import ArrayTokenDataset
from headstart.zoo.local import TOKENIZER_FOLDER  # a run's tokenizer, and a local zoo entry's


# Above this share of [UNK] tokens, warn. English news on MiniLM's WordPiece has almost none
# (0.00 % on BBC News: a stray emoji or symbol); 5 % is one word in ~20 gone, whole sentences
# in a script the vocabulary lacks, where text models lose what a character baseline keeps.
UNKNOWN_WARNING = 0.05


def unknown_token_share(part) -> float | None:
    """The share of a tokenised part's tokens (special tokens not counted) that the tokenizer
    mapped to its unknown token; None where the texts were not tokenised (TF-IDF)."""
    counted = part.notes.get("counted_tokens")
    return part.notes.get("unknown_tokens", 0) / counted if counted else None


@register_modality("text")
class TextModality(Modality):
    priority = 10  # its tests are specific (.jsonl, text columns, .txt files): ask before images
    default_backbone = "all-MiniLM-L6-v2"
    # LoRA, and the baseline a text user tries first (TF-IDF + logistic regression); the cheap
    # scratch model is an embedding bag
    default_arms = ("probe", "lp-ft", "finetune", "lora", "tfidf", "scratch")
    default_scratch_model = "embedding-bag"
    default_pretrain_backbone = "all-MiniLM-L6-v2"  # MLM continues the encoder on your texts
    auto_baseline = "tfidf"  # one shot and the strongest no-transfer text model (BENCHMARKS §6)
    # integrated gradients over MiniLM: 32.6 s for bbc-news's 4 examples, ~8x an image (BENCHMARKS 17.3)
    closing_seconds = {"explanations": 8.5, "deploy": 4.5}
    # a transformer wants rates ~10x lower than a CNN; BERT-style layer-wise decay in finetune
    strategy_defaults = {
        "finetune": {"lr": 1e-4, "epochs": 5, "layer_decay": 0.8},
        "lp-ft": {"lr": 3e-5, "epochs": 3},
        "lora": {"lr": 1e-3, "epochs": 5},
        "scratch": {"lr": 2e-3, "epochs": 30},
    }
    augments = False  # the augmentation presets are image transforms
    words = {"input_unit": "tokens", "example": "text", "noun": "examples", "skipped": "empty or unusable text(s)"}
    formats = ('a CSV with columns text,label, a JSONL file of {"text": ..., "label": ...} lines, a Parquet file '
               'or `datasets` folder with a text column, WebDataset .tar shards of txt and cls members, or a '
               'folder with one sub-folder of .txt files per class')
    # ONNX Runtime was not faster than eager on the text encoders (BENCHMARKS.md); the ONNX
    # engines feed pixels anyway
    extraction_engine = "torch"

    def recognises(self, path: Path, options: LoadOptions) -> bool:
        if is_table(path):
            return table_role(path, options) == "text"
        if is_shard_spec(path):
            return shard_role(path) == "text"
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return True
        if suffix == ".csv":
            return csv_is_text(path, options.text_column, options.label_column)
        return path.is_dir() and folder_is_text(path)

    def load(self, path: Path, options: LoadOptions) -> TextData:
        if is_table(path):
            return load_text_table_file(path, options.strict, text=options.text_column, label=options.label_column)
        if is_shard_spec(path):
            return load_text_shards(path, options.strict, text=options.text_column, label=options.label_column)
        if path.is_dir():
            if options.names_columns:
                raise HeadstartError("--text-column and --label-column name CSV or JSONL columns; a folder has none",
                                     "drop them")
            return load_text_folder(path, strict=options.strict)
        if path.suffix.lower() in (".csv", ".jsonl"):
            return load_text_table(path, strict=options.strict, text_column=options.text_column,
                                   label_column=options.label_column)
        raise HeadstartError(f"{path} is not a text dataset", f"pass {self.formats}")

    def recognises_pool(self, path: Path, options: LoadOptions) -> bool:
        if is_table(path) or is_shard_spec(path):
            return self.recognises(path, options)
        suffix = path.suffix.lower()
        if suffix in (".txt", ".jsonl"):
            return True
        if suffix == ".csv":
            return csv_is_text(path, options.text_column, None)
        if not path.is_dir():
            return False
        files = [p for p in path.rglob("*") if p.is_file()]
        # the image loader's own test, so a folder of images and stray notes stays images
        return any(p.suffix.lower() == ".txt" for p in files) and not any(is_image_file(p) for p in files)

    def load_pool(self, path: Path, options: LoadOptions) -> TextData:
        if is_table(path):
            return load_text_table_file(path, options.strict, text=options.text_column, labelled=False).unlabelled()
        if is_shard_spec(path):
            return load_text_shards(path, options.strict, text=options.text_column, labelled=False).unlabelled()
        return load_text_pool(path, strict=options.strict, text_column=options.text_column)

    def data_notes(self, parts: list, preprocessing: dict) -> tuple[dict, list[str]]:
        truncated = sum(p.notes.get("truncated", 0) for p in parts)
        figures = {"truncated_texts": truncated}
        if "max_length" in preprocessing:
            figures["max_length"] = preprocessing["max_length"]
        notes = [f"{truncated} text(s) were longer than {preprocessing.get('max_length')} tokens and were "
                 f"truncated; --max-length raises the limit (up to the model's)."] if truncated else []
        share = unknown_token_share(parts[0]) if parts else None
        if share is not None:
            figures["unknown_token_share"] = round(share, 4)
            if share > UNKNOWN_WARNING:
                notes.append(f"{share:.1%} of the training texts' tokens are unknown to the tokenizer ([UNK]): the "
                             f"model sees them all as one token. --strategy tfidf --tfidf-analyzer char reads any "
                             f"script as character n-grams; or choose a --backbone whose tokenizer covers this "
                             f"script (a multilingual encoder).")
        return figures, notes

    def backbone_options(self, config, spec, *, pretrained: bool, data) -> dict:
        if pretrained or spec.name == config.backbone:  # scratch: same architecture and tokenizer
            return {"max_length": config.max_length, "pooling": config.pooling}
        # a small scratch model reads the transfer backbone's tokens (its own length limit)
        return {"tokenizer_from": config.backbone}

    def build_classifier(self, backbone, num_classes: int) -> Classifier:
        return Classifier(backbone, num_classes)

    def training_dataset(self, data: TextData, augment: str, input_size: int):
        return ArrayTokenDataset(data.inputs, data.labels)

    def rebuild_backbone(self, record: dict, folder: Path, *, max_length: int | None = None,
                         pooling: str | None = None, tokenizer_from: str | None = None):
        # tokenizer_from is for models without a tokenizer of their own; this one has its own.
        from headstart.zoo.text_backbones import POOLINGS, rebuild_text_backbone

        backbone = rebuild_text_backbone({**record, "weights": "random"}, folder / TOKENIZER_FOLDER)
        limit = (record.get("model_config") or {}).get("max_position_embeddings") or 10**9  # embedding bag: none
        if not (max_length is None or 2 <= max_length <= limit) or pooling not in (None, *POOLINGS):
            raise HeadstartError(f"'{record['name']}' cannot read {max_length} tokens ({pooling} pooling)",
                                 hint=f"leave --max-length unset or at most {limit}; --pooling {' or '.join(POOLINGS)}")
        pre = backbone.preprocessing
        backbone.preprocessing = replace(pre, max_length=max_length or pre.max_length, pooling=pooling or pre.pooling)
        return backbone

    def copy_backbone_files(self, run_dir: Path, folder: Path) -> None:
        # the tokenizer travels with the entry, so it builds offline
        shutil.copytree(Path(run_dir) / TOKENIZER_FOLDER, Path(folder) / TOKENIZER_FOLDER)

    raw_name = "bag of words (TF-IDF)"

    def raw_features(self, train: TextData, val: TextData):
        from sklearn.feature_extraction.text import TfidfVectorizer

        from headstart.zoo.tfidf import VECTORIZER  # the tfidf arm's own settings

        try:
            vectorizer = TfidfVectorizer(**VECTORIZER)
            train_x = vectorizer.fit_transform(train.texts)
        except ValueError:  # too few texts for min_df=2 to leave any word
            vectorizer = TfidfVectorizer(**{**VECTORIZER, "min_df": 1})
            train_x = vectorizer.fit_transform(train.texts)
        return train_x, vectorizer.transform(val.texts)

    def size_gap(self, data: TextData, backbone) -> dict:
        import numpy as np

        prepared = backbone.prepare(data)  # tokenised (and cached) as the backbone reads it
        lengths = (prepared.tokens >= 0).sum(1)
        return {"native": int(np.median(lengths)), "model": prepared.notes.get("max_length"), "unit": "tokens",
                "measure": "median length (after truncation)", "option": "--max-length", "upsampled": False,
                "truncated_share": round(prepared.notes.get("truncated", 0) / max(len(data), 1), 4)}

    def read_inputs(self, inputs: list[str], text_file: str | None, meta: dict) -> Inputs:
        texts = list(inputs) + (read_text_lines(text_file) if text_file else [])
        if not texts:
            raise HeadstartError("nothing to predict", hint='pass texts ("some text") or --file lines.txt')
        usable = [i for i, t in enumerate(texts) if t.strip()]
        errors = {i: "empty text" for i in range(len(texts)) if i not in set(usable)}
        data = TextData(texts=[texts[i] for i in usable], labels=None, classes=[], name="inputs") if usable else None
        return Inputs(texts, "text", data, usable, errors)


def _save_text_classifier(model: Classifier, run_dir: Path) -> None:
    # the tokenizer travels with the run: predict must work offline
    with atomic_dir(Path(run_dir) / TOKENIZER_FOLDER) as folder:
        model.backbone.tokenizer.save_pretrained(str(folder))
    save_module_weights(model, run_dir)


def _load_text_classifier(run_dir: Path, meta: dict) -> Classifier:
    from headstart.zoo.text_backbones import rebuild_text_backbone

    backbone = rebuild_text_backbone(meta["backbone"], Path(run_dir) / TOKENIZER_FOLDER)
    return load_module_weights(Classifier(backbone, meta["num_classes"]), run_dir)


register_model_format(
    "headstart-text-classifier", save=_save_text_classifier, load=_load_text_classifier,
    input="int token ids (B, L) from the tokenizer in ./tokenizer, padded with -1 (the attention mask)")
