"""Small local copies of the seven benchmarks, written in each dataset's own published schema, for the eval tests.

Each writer lays its files out the way the hub snapshot (or the authors' release) does: parquet with `Image`
columns stored as `{"bytes", "path"}` structs, or JSON with image paths relative to the data file. Images are real
PNGs drawn with PIL. Import from a test as `from tests.eval_fixtures import ...`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw


def png(text: str = "", size: tuple[int, int] = (48, 40), color: str = "white") -> bytes:
    """A small real PNG with `text` drawn on it (so each image differs)."""
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).text((2, 2), text, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _parquet(path: Path, rows: list[dict], features: dict) -> Path:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=datasets.Features(features)).to_parquet(str(path))
    return path


def _image(data: bytes | None, name: str) -> dict | None:
    return None if data is None else {"bytes": data, "path": name}


def mathvista(root: Path) -> Path:
    """AI4Math/MathVista layout: data/testmini-00000-of-00001.parquet, `image` relative, `decoded_image` embedded."""
    import datasets

    meta = {"category": "math-targeted-vqa", "context": "geometry diagram", "grade": "high school", "img_height": 40,
            "img_width": 48, "language": "english", "skills": ["geometry reasoning"], "source": "Geometry3K",
            "split": "testmini", "task": "geometry problem solving"}  # fmt: skip
    rows = [
        dict(pid="1", question="Which shape is larger?", image="images/1.png", decoded_image=_image(png("1"), "1.png"),
             choices=["circle", "square"], unit=None, precision=None, answer="square", question_type="multi_choice",
             answer_type="text", metadata=meta,
             query="Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
             "Question: Which shape is larger?\nChoices:\n(A) circle\n(B) square"),
        dict(pid="2", question="How many circles?", image="images/2.png", decoded_image=_image(png("2"), "2.png"),
             choices=None, unit=None, precision=None, answer="3", question_type="free_form", answer_type="integer",
             metadata=meta, query="Hint: integer\nQuestion: How many circles?"),
        dict(pid="3", question="What is the length?", image="images/3.png", decoded_image=_image(png("3"), "3.png"),
             choices=None, unit="cm", precision=1.0, answer="1.5", question_type="free_form", answer_type="float",
             metadata=meta, query="Hint: float\nQuestion: What is the length? (Unit: cm)"),
        dict(pid="4", question="Which years?", image="images/4.png", decoded_image=_image(png("4"), "4.png"),
             choices=None, unit=None, precision=None, answer="[2007, 2008]", question_type="free_form",
             answer_type="list", metadata=meta, query="Hint: list\nQuestion: Which years?"),
        # bad data: the image file is missing and nothing is embedded
        dict(pid="5", question="Broken?", image="images/missing.png", decoded_image=None, choices=None, unit=None,
             precision=None, answer="1", question_type="free_form", answer_type="integer", metadata=meta, query=""),
        # bad data: the gold is none of the choices
        dict(pid="6", question="Pick one", image="images/6.png", decoded_image=_image(png("6"), "6.png"),
             choices=["a", "b"], unit=None, precision=None, answer="c", question_type="multi_choice",
             answer_type="text", metadata=meta, query="Question: Pick one"),
    ]  # fmt: skip
    features = {
        "pid": datasets.Value("string"), "question": datasets.Value("string"), "image": datasets.Value("string"),
        "decoded_image": datasets.Image(), "choices": datasets.List(datasets.Value("string")),
        "unit": datasets.Value("string"), "precision": datasets.Value("float64"), "answer": datasets.Value("string"),
        "question_type": datasets.Value("string"), "answer_type": datasets.Value("string"),
        "metadata": {k: datasets.Value("int64") if k.startswith("img_") else
                     (datasets.List(datasets.Value("string")) if k == "skills" else datasets.Value("string")) for k in meta},
        "query": datasets.Value("string"),
    }  # fmt: skip
    _parquet(root / "data" / "testmini-00000-of-00001.parquet", rows, features)
    return root


def mathverse(root: Path) -> Path:
    """AI4Math/MathVerse layout: testmini.parquet (five versions) and testmini_text_only.parquet."""
    import datasets

    def row(index: int, problem: int, version: str, qtype: str, answer: str, image: bytes | None) -> dict:
        question = f"Problem {problem} ({version})" + (
            "\nChoices:\nA:1\nB:2\nC:3\nD:4" if qtype == "multi-choice" else ""
        )
        return dict(
            sample_index=str(index), problem_index=str(problem), problem_version=version, question=question,
            image=_image(image, f"{index}.png"), answer=answer, question_type=qtype,
            metadata={"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Length"},
            query_wo=f"Please directly answer.\nQuestion: {question}",
            query_cot=f"Please first conduct reasoning.\nQuestion: {question}",
            question_for_eval=f"Full problem {problem}",
        )  # fmt: skip

    features = {
        "sample_index": datasets.Value("string"), "problem_index": datasets.Value("string"),
        "problem_version": datasets.Value("string"), "question": datasets.Value("string"), "image": datasets.Image(),
        "answer": datasets.Value("string"), "question_type": datasets.Value("string"),
        "metadata": {k: datasets.Value("string") for k in ("split", "source", "subject", "subfield")},
        "query_wo": datasets.Value("string"), "query_cot": datasets.Value("string"),
        "question_for_eval": datasets.Value("string"),
    }  # fmt: skip
    main = [
        row(1, 1, "Text Dominant", "multi-choice", "B", png("v1")),
        row(2, 1, "Vision Only", "multi-choice", "B", png("v2")),
        row(3, 2, "Text Lite", "free-form", "\\frac{5}{2}", png("v3")),
        row(4, 2, "Vision Dominant", "free-form", "\\frac{5}{2}", png("v4")),
        row(5, 2, "Vision Intensive", "free-form", "", png("v5")),  # bad data: no gold answer
    ]
    _parquet(root / "testmini.parquet", main, features)
    _parquet(root / "testmini_text_only.parquet", [row(6, 1, "Text Only", "multi-choice", "B", None)], features)
    return root


def mathvision(root: Path) -> Path:
    """MathLLMs/MathVision layout: data/test-*.parquet and data/testmini-*.parquet."""
    import datasets

    features = {
        "id": datasets.Value("string"), "question": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")), "image": datasets.Value("string"),
        "decoded_image": datasets.Image(), "answer": datasets.Value("string"), "solution": datasets.Value("string"),
        "level": datasets.Value("int64"), "subject": datasets.Value("string"),
    }  # fmt: skip
    rows = [
        dict(id="1", question="<image1> Which is red?", options=["A", "B", "C", "D", "E"], image="images/1.jpg",
             decoded_image=_image(png("mv1"), "1.jpg"), answer="C", solution="", level=2, subject="logic"),
        dict(id="2", question="<image1> How long is AB?", options=[], image="images/2.jpg",
             decoded_image=_image(png("mv2"), "2.jpg"), answer="2.5", solution="", level=3, subject="metric geometry"),
        dict(id="3", question="<image1> Which one?", options=[], image="images/3.jpg",
             decoded_image=_image(png("mv3"), "3.jpg"), answer="B", solution="", level=1, subject="counting"),
    ]  # fmt: skip
    _parquet(root / "data" / "test-00000-of-00001.parquet", rows, features)
    _parquet(root / "data" / "testmini-00000-of-00001.parquet", rows[:1], features)
    return root


def wemath(root: Path) -> Path:
    """We-Math/We-Math layout: testmini parquet; one 2-step problem (3 rows) and one 3-step problem (4 rows)."""
    import datasets

    def row(pid: str, key: str, answer: str) -> dict:
        return {"ID": pid, "split": "testmini", "knowledge concept": "Angles", "question": f"Problem {pid} {key}",
                "option": "A. 30°; B. 45°; C. 60°; D. 90°; E. No correct answer", "answer": answer,
                "image_path": _image(png(f"{pid}{key}"), f"{pid}{key}.png"), "key": key, "question number": 1,
                "knowledge concept description": "angles"}  # fmt: skip

    features = {
        "ID": datasets.Value("string"), "split": datasets.Value("string"),
        "knowledge concept": datasets.Value("string"), "question": datasets.Value("string"),
        "option": datasets.Value("string"), "answer": datasets.Value("string"), "image_path": datasets.Image(),
        "key": datasets.Value("string"), "question number": datasets.Value("int64"),
        "knowledge concept description": datasets.Value("string"),
    }  # fmt: skip
    rows = [row("1", "2steps_1", "A"), row("1", "2steps_2", "B"), row("1", "2steps_multi", "C")]
    rows += [
        row("2", "3steps_1", "A"),
        row("2", "3steps_2", "B"),
        row("2", "3steps_3", "C"),
        row("2", "3steps_multi", "D"),
    ]
    _parquet(root / "testmini-00000-of-00001.parquet", rows, features)
    return root


def logicvista(root: Path) -> Path:
    """The LogicVista release layout: data/dataset.json keyed by id, images under data/images/."""
    images = root / "data" / "images"
    images.mkdir(parents=True, exist_ok=True)
    data = {}
    for i, answer in enumerate(["C", "A, C", "3"]):
        (images / f"v1_{i}.png").write_bytes(png(f"lv{i}"))
        data[f"v1_{i}"] = {
            "imagename": f"v1_{i}.png",
            "question": f"Which choice (A, B, C, or D) fits {i}?",
            "answer": answer,
            "reasoning": "because",
            "skill": ["inductive"] if i < 2 else ["numerical"],
            "capability": ["diagram"],
            "imagesource": "aptitudetests",
            "sourcelink": "https://example.org",
        }
    # bad data: the image is a broken file
    (images / "v1_3.png").write_bytes(b"not a png")
    data["v1_3"] = {**data["v1_0"], "imagename": "v1_3.png"}
    (root / "data" / "dataset.json").write_text(json.dumps(data, indent=1))
    return root


def dynamath(root: Path, seeds: int = 2, variants: tuple[int, ...] = (1, 2, 10)) -> Path:
    """DynaMath/DynaMath_Sample layout: one parquet per variant split, data/sample_variantK-*.parquet."""
    import datasets

    features = {
        "id": datasets.Value("string"), "question": datasets.Value("string"), "image": datasets.Value("string"),
        "decoded_image": datasets.Image(), "ground_truth": datasets.Value("string"),
        "answer_type": datasets.Value("string"), "subject": datasets.Value("string"),
        "knowledge_level": datasets.Value("string"),
    }  # fmt: skip
    for variant in variants:
        rows = []
        for seed in range(1, seeds + 1):
            multiple = seed % 2 == 1
            rows.append(
                dict(id=str(seed), question=f"Seed {seed} variant {variant}?" + (" Choices: (A) x (B) y" if multiple else ""),
                     image=f"images/{seed}_{variant}.png", decoded_image=_image(png(f"{seed}v{variant}"), "x.png"),
                     ground_truth="B" if multiple else f"{seed + variant / 10:.3f}",
                     answer_type="multiple choice" if multiple else "float", subject="AL", knowledge_level="high school")
            )  # fmt: skip
        _parquet(root / "data" / f"sample_variant{variant}-00000-of-00001.parquet", rows, features)
    return root


def mmmu(root: Path) -> Path:
    """MMMU/MMMU layout: one folder per subject config, <Subject>/validation-*.parquet, image_1..image_7."""
    import datasets

    features = {
        "id": datasets.Value("string"), "question": datasets.Value("string"), "options": datasets.Value("string"),
        "explanation": datasets.Value("string"),
        **{f"image_{i}": datasets.Image() for i in range(1, 8)},
        "img_type": datasets.Value("string"), "answer": datasets.Value("string"),
        "topic_difficulty": datasets.Value("string"), "question_type": datasets.Value("string"),
        "subfield": datasets.Value("string"),
    }  # fmt: skip
    empty = {f"image_{i}": None for i in range(1, 8)}
    math_rows = [
        {**empty, "id": "validation_Math_1", "question": "Compare <image 1> with <image 2>. Which is larger?",
         "options": "['the first', 'the second', 'equal']", "explanation": "", "image_1": _image(png("m1a"), "a.png"),
         "image_2": _image(png("m1b", color="yellow"), "b.png"), "img_type": "['Diagrams']", "answer": "B",
         "topic_difficulty": "Easy", "question_type": "multiple-choice", "subfield": "Geometry"},
        {**empty, "id": "validation_Math_2", "question": "<image 1> What is x?", "options": "[]", "explanation": "",
         "image_1": _image(png("m2"), "c.png"), "img_type": "['Diagrams']", "answer": "['4', '4.0']",
         "topic_difficulty": "Medium", "question_type": "open", "subfield": "Algebra"},
        # bad data: refers to <image 2>, which is empty
        {**empty, "id": "validation_Math_3", "question": "Compare <image 1> and <image 2>.", "options": "['a', 'b']",
         "explanation": "", "image_1": _image(png("m3"), "d.png"), "img_type": "[]", "answer": "A",
         "topic_difficulty": "Hard", "question_type": "multiple-choice", "subfield": "Geometry"},
    ]  # fmt: skip
    art_rows = [
        {**empty, "id": "validation_Art_1", "question": "<image 1> Which style?", "options": "['Baroque', 'Cubism']",
         "explanation": "", "image_1": _image(png("art"), "e.png"), "img_type": "['Paintings']", "answer": "A",
         "topic_difficulty": "Easy", "question_type": "multiple-choice", "subfield": "Art History"},
    ]  # fmt: skip
    _parquet(root / "Math" / "validation-00000-of-00001.parquet", math_rows, features)
    _parquet(root / "Art" / "validation-00000-of-00001.parquet", art_rows, features)
    _parquet(root / "Art" / "dev-00000-of-00001.parquet", art_rows, features)  # another split: never read
    return root


def generic(root: Path) -> Path:
    """A JSONL file with its own column names and images as paths relative to it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    rows = []
    for i in range(3):
        (root / "img" / f"{i}.png").write_bytes(png(f"g{i}"))
        rows.append(
            {"uid": f"g{i}", "problem": f"What is {i} + 1?", "picture": f"img/{i}.png", "solution": str(i + 1)}
        )
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "data.jsonl"


def arithmetic(root: Path, n: int = 40) -> Path:
    """A JSONL file of `n` questions `What is i + 1?` (ids `q<i>`, gold `i + 1`) sharing one image, for the generic
    adapter: enough samples for a difference to be told from noise, each question saying which sample it is."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "img.png").write_bytes(png("+"))
    rows = [
        {"id": f"q{i}", "question": f"What is {i} + 1?", "image": "img.png", "answer": str(i + 1)} for i in range(n)
    ]
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "data.jsonl"
