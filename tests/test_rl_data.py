"""Datasets to trainer rows: prompts per mode, images decoded as inference decodes them, bad rows dropped and
counted, too few kept refused, and hub datasets whose images ship as an archive (ViRL39K) fetched and unpacked."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import datasets
import pytest
from PIL import Image

from rapid_agent.inputs import load_image
from rapid_agent.perception import captioner_prompt
from rapid_agent.rl.config import VPOConfig
from rapid_agent.rl.data import DatasetError, load_train_dataset, prepare_dataset


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
    config = VPOConfig(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        dataset_name=str(folder),
        mode="qcap",
        min_kept_fraction=0.25,  # 2 of 7 rows are usable here, on purpose
    )
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


def test_a_mostly_dropped_dataset_is_refused_with_the_counts(tmp_path) -> None:
    folder = _virl_like_folder(tmp_path / "virl")
    config = VPOConfig(output_dir=str(tmp_path / "out"), report_to="none", dataset_name=str(folder), mode="qcap")
    with pytest.raises(DatasetError, match=r"kept only 2 of 7 rows \(28.6% < min_kept_fraction 0.5\)") as info:
        load_train_dataset(config)
    assert "missing image: 1" in str(info.value) and "unparseable answer: 2" in str(info.value)
    shutil.rmtree(folder / "images")
    with pytest.raises(DatasetError, match=r"no usable rows out of 7 .*missing image: 6.*image_root"):
        load_train_dataset(config)


def test_training_images_are_the_pixels_inference_sees(tmp_path) -> None:
    """A transparent PNG (black under its transparent pixels, as most are) is laid on white by `load_image`, the
    decoder inference uses; the training row must hold the same pixels, not the black the raw file decodes to."""
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    for x in range(16, 48):
        for y in range(16, 48):
            transparent.putpixel((x, y), (200, 30, 30, 255))
    transparent.save(tmp_path / "diagram.png")
    _png(tmp_path / "photo.png", "green")
    Image.new("RGB", (40, 12), "blue").save(tmp_path / "thin.png")  # under 28 px: inference pads it
    raw = datasets.Dataset.from_list(
        [
            {"question": "How many squares?", "image": str(tmp_path / name), "answer": "1"}
            for name in ("diagram.png", "photo.png", "thin.png")
        ]
    )
    data, dropped = prepare_dataset(raw, mode="cap")
    assert not dropped
    for row, name in zip(data, ("diagram.png", "photo.png", "thin.png")):
        seen = load_image(str(tmp_path / name))
        assert row["image"].mode == "RGB" and row["image"].size == seen.size
        assert row["image"].tobytes() == seen.tobytes(), name
    assert data[0]["image"].getpixel((0, 0)) == (255, 255, 255)  # white, not black
    # a plain RGB image within budget is kept as its file, not re-encoded
    assert data.cast_column("image", datasets.Image(decode=False))[1]["image"]["path"] == str(tmp_path / "photo.png")


def _hub_repo(root: Path, *, with_archive: bool = True) -> Path:
    """A local stand-in for the TIGER-Lab/ViRL39K repository: the table and images.zip, as its card describes."""
    root.mkdir(parents=True)
    images = root.parent / "images-src"
    (images / "images").mkdir(parents=True)
    rows = []
    for i, colour in enumerate(["red", "blue", "green"]):
        _png(images / "images" / f"{i}.png", colour)
        rows.append(
            {
                "qid": str(i),
                "question": f"<image>Which colour {i}?",
                "answer": "\\boxed{A}",
                "image": [f"images/{i}.png"],
            }
        )
    datasets.Dataset.from_list(rows).to_parquet(str(root / "39Krelease.parquet"))
    if with_archive:
        with zipfile.ZipFile(root / "images.zip", "w") as archive:
            for file in sorted((images / "images").iterdir()):
                archive.write(file, f"images/{file.name}")
    return root


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """`huggingface_hub.snapshot_download` serving local repositories, recording its calls."""
    import huggingface_hub

    repos: dict[str, Path] = {}
    calls: list[dict] = []

    def snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        return str(repos[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setenv("RAPID_AGENT_CACHE", str(tmp_path / "cache"))
    return repos, calls


def test_hub_dataset_images_are_fetched_and_unpacked_once(tmp_path, hub) -> None:
    repos, calls = hub
    # the hub client names a snapshot folder after its commit
    repos["TIGER-Lab/ViRL39K"] = _hub_repo(tmp_path / "hub" / "3f1c0a9")
    config = VPOConfig(
        output_dir=str(tmp_path / "out"), report_to="none", dataset_name="TIGER-Lab/ViRL39K", mode="qcap"
    )
    data = load_train_dataset(config)
    assert data["question"] == ["Which colour 0?", "Which colour 1?", "Which colour 2?"]
    assert data["answer"] == ["A", "A", "A"] and data[1]["image"].getpixel((0, 0)) == (0, 0, 255)
    assert calls[0]["repo_id"] == "TIGER-Lab/ViRL39K" and calls[0]["repo_type"] == "dataset"
    unpacked = tmp_path / "cache" / "datasets" / "TIGER-Lab__ViRL39K" / "3f1c0a9"
    assert (unpacked / "images" / "0.png").is_file()
    stamp = (unpacked / "images" / "0.png").stat().st_mtime_ns
    assert len(load_train_dataset(config)) == 3 and len(calls) == 2
    assert (unpacked / "images" / "0.png").stat().st_mtime_ns == stamp  # not unpacked again


def test_a_hub_dataset_without_its_images_is_refused(tmp_path, hub) -> None:
    repos, _ = hub
    repos["org/no-images"] = _hub_repo(tmp_path / "hub" / "abc123", with_archive=False)
    config = VPOConfig(output_dir=str(tmp_path / "out"), report_to="none", dataset_name="org/no-images")
    with pytest.raises(DatasetError, match=r"no usable rows out of 3 \(dropped by reason: missing image: 3\)"):
        load_train_dataset(config)


def test_an_unreachable_hub_dataset_says_what_to_do(tmp_path, monkeypatch) -> None:
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise OSError("offline mode is enabled and the files are not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    config = VPOConfig(output_dir=str(tmp_path / "out"), report_to="none", dataset_name="org/missing")
    with pytest.raises(ValueError, match=r"could not fetch the hub dataset 'org/missing'.*local folder"):
        load_train_dataset(config)
