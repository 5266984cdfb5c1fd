"""Input validation: every bad input fails with a message naming its field; big images are downscaled."""

import base64
import io

import pytest
from PIL import Image
from pydantic import ValidationError

from rapid_agent.inputs import Sample, load_image


def png_bytes(size=(40, 30), color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_image_form_loads(tmp_path):
    raw = png_bytes()
    path = tmp_path / "a.png"
    path.write_bytes(raw)
    data_url = "data:image/png;base64," + base64.b64encode(raw).decode()
    for value in (str(path), path, raw, Image.open(io.BytesIO(raw)), data_url):
        image = Sample.model_validate({"question": "q", "image": value}).image
        assert image.size == (40, 30) and image.mode == "RGB"
        assert image.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: str(p / "missing.png"), "image file not found"),
        (lambda p: (p / "empty.png").write_bytes(b"") and str(p / "empty.png") or str(p / "empty.png"), "empty"),
        (lambda p: png_bytes()[:40], "cannot decode image"),
        (lambda p: b"not an image at all", "cannot decode image"),
        (lambda p: "data:image/png;base64,@@@", "not valid base64"),
        (lambda p: 12345, "unsupported image type int"),
    ],
)
def test_bad_images_name_the_field(tmp_path, make, message):
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "q", "image": make(tmp_path)})
    error = info.value.errors()[0]
    assert error["loc"] == ("image",) and message in error["msg"]


def test_empty_question_and_answer_and_unknown_field():
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "   "})
    assert info.value.errors()[0]["loc"] == ("question",)
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "q", "answer": " "})
    assert info.value.errors()[0]["loc"] == ("answer",)
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "q", "imag": "x.png"})
    assert info.value.errors()[0]["loc"] == ("imag",)


def test_large_images_are_downscaled_to_the_budget():
    image = load_image(Image.new("RGB", (4000, 2000)), max_pixels=100_000)
    assert image.width * image.height <= 100_000
    assert abs(image.width / image.height - 2.0) < 0.02
    small = Sample.model_validate({"question": "q", "image": png_bytes((20, 20))}, context={"max_pixels": 10_000})
    assert small.image.size == (20, 20)
