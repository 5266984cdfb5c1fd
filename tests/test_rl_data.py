"""Datasets to trainer rows: prompts per mode, images resolved, bad rows dropped and counted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
from PIL import Image

from rapid_agent.perception import captioner_prompt
from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.data import load_train_dataset, prepare_dataset


def _png(path: Path, colour: str = "red") -> Path:
    Image.new("RGB", (56, 56), colour).save(path)
    return path


def _virl_like_folder(root: Path) -> Path:
    """A local copy laid out like ViRL39K: a parquet table whose `image` column lists relative paths."""
    (root / "images").mkdir(parents=True)
    _png(root / "images" / "a.png")
    _png(root / "images" / "b.png", "blue")
    (root / "images" / "broken.png").write_bytes(b"not a png at all")
    rows = [
        {"qid": "1", "question": "<image>How many red squares?", "answer": "\\boxed{1}", "image": ["images/a.png"]},
        {
            "qid": "2",
            "question": "<image>Which colour? A. red B. blue",
            "answer": "\\boxed{B}",
            "image": ["images/b.png"],
        },
        {"qid": "3", "question": "<image>Lost image", "answer": "\\boxed{2}", "image": ["images/missing.png"]},
        {"qid": "4", "question": "<image>Corrupt image", "answer": "\\boxed{2}", "image": ["images/broken.png"]},
        {"qid": "5", "question": "<image>No gold", "answer": "", "image": ["images/a.png"]},
        {"qid": "6", "question": "<image>Open box", "answer": "\\boxed{2", "image": ["images/a.png"]},
        {
            "qid": "7",
            "question": "<image><image>Two",
            "answer": "\\boxed{2}",
            "image": ["images/a.png", "images/b.png"],
        },
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(root / "39Krelease.parquet"))
    return root


def test_local_virl_layout_maps_rows_and_drops_bad_ones_with_counts(tmp_path, caplog) -> None:
    folder = _virl_like_folder(tmp_path / "virl")
    config = VPOConfig(output_dir=str(tmp_path / "out"), report_to="none", dataset_name=str(folder), mode="qcap")
    with caplog.at_level(logging.WARNING, logger="rapid_agent.rl.data"):
        data = load_train_dataset(config)
    assert data["question"] == ["How many red squares?", "Which colour? A. red B. blue"]
    assert data["answer"] == ["1", "B"]
    row = data[0]
    assert row["image"].size == (56, 56)
    content = row["prompt"][0]["content"]
    assert row["prompt"][0]["role"] == "user" and content[0]["type"] == "image"
    assert content[1]["text"] == captioner_prompt("qcap", "How many red squares?")
    log = caplog.text
    assert "kept 2 rows, dropped 5" in log
    for reason, count in [
        ("missing image", 1),
        ("unreadable image", 1),
        ("unparseable answer", 2),
        ("several images", 1),
    ]:
        assert f"'{reason}': {count}" in log


def test_any_columns_from_jsonl_with_embedded_choices(tmp_path) -> None:
    image = _png(tmp_path / "x.png")
    lines = [{"problem": "What colour?", "pic": str(image), "gold": "A", "options": ["red", "blue"]}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    raw = datasets.load_dataset("json", data_files=str(tmp_path / "d.jsonl"), split="train")
    data, dropped = prepare_dataset(
        raw, mode="cap", question_column="problem", image_column="pic", answer_column="gold", choices_column="options"
    )
    assert not dropped and data[0]["choices"] == ["red", "blue"] and data[0]["answer"] == "A"
    assert data[0]["prompt"][0]["content"][1]["text"] == captioner_prompt("cap", "What colour?")


def test_world_source(tmp_path) -> None:
    config = VPOConfig(
        output_dir=str(tmp_path), report_to="none", world_train_size=6, world_test_size=2, max_samples=4
    )
    data = load_train_dataset(config)
    assert len(data) == 4 and set(data.column_names) == {"prompt", "image", "question", "answer", "choices"}
    assert all(a.strip() for a in data["answer"])
