"""Questions through a TFDS builder over local JSON lines: `GeneratorBasedBuilder` writing
array_record (no TensorFlow: `as_data_source`, never `as_dataset`), never a download.

    records = read_tfds("/data/questions.jsonl")   # prepared once into /data/questions.jsonl.tfds/
    records = read_tfds("/data/prepared_builder")  # a folder that already holds a prepared builder
"""
from __future__ import annotations

import os

_BUILDER = None


def _builder_class():
    global _BUILDER
    if _BUILDER is not None:
        return _BUILDER
    import tensorflow_datasets as tfds

    class LocalQuestions(tfds.core.GeneratorBasedBuilder):
        """Unlabeled questions from one local JSON lines file (answer / rephrasing optional)."""
        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, jsonl_path: str, **kwargs):
            self._jsonl_path = jsonl_path
            super().__init__(**kwargs)

        def _info(self):
            text = tfds.features.Text()
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(
                {"id": text, "question": text, "answer": text, "rephrasing": text}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            from zeroplay.data.questions import QUESTION_KEYS, read_jsonl

            for i, r in enumerate(read_jsonl(self._jsonl_path)):
                q = next((str(r[k]) for k in QUESTION_KEYS if r.get(k) is not None), "")
                rid = str(r.get("id", i))
                yield f"{i}", {"id": rid, "question": q, "answer": "" if r.get("answer") is None else str(r["answer"]),
                               "rephrasing": str(r.get("rephrasing") or "")}

    _BUILDER = LocalQuestions
    return _BUILDER


def read_tfds(path: str, data_dir: str | None = None, split: str = "train") -> list[dict]:
    import tensorflow_datasets as tfds

    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "dataset_info.json")):
            raise FileNotFoundError(f"{path} holds no prepared TFDS builder (no dataset_info.json)")
        source = tfds.builder_from_directory(path).as_data_source(split)
    else:
        if not os.path.exists(path):
            raise FileNotFoundError(f"question file {path} does not exist; point game.source at a JSON lines file")
        builder = _builder_class()(jsonl_path=path, data_dir=data_dir or path + ".tfds", file_format="array_record")
        if not os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        source = builder.as_data_source(split)
    out = []
    for i in range(len(source)):
        ex = source[i]
        dec = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)
        rec = {k: dec(ex[k]) for k in ("id", "question", "answer", "rephrasing")}
        out.append({k: (v if v != "" else None) for k, v in rec.items()})
    out.sort(key=lambda r: int(r["id"]) if str(r["id"]).isdigit() else 0)  # file order, whatever the shards
    return out
