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
    assert error["loc"] == ("images",) and message in error["msg"]


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
    small = Sample.model_validate({"question": "q", "image": png_bytes((40, 40))}, context={"max_pixels": 10_000})
    assert small.image.size == (40, 40)


def test_tiny_images_are_padded_and_extreme_aspect_ratios_refused():
    padded = load_image(Image.new("RGB", (20, 300), "red"))
    assert padded.size == (28, 300) and padded.getpixel((27, 0)) == (255, 255, 255)
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "q", "image": png_bytes((4000, 2))})
    assert info.value.errors()[0]["loc"] == ("images",) and "aspect ratio 2000:1" in info.value.errors()[0]["msg"]


def test_transparent_pixels_are_laid_on_white():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent black: what most PNG editors write
    image.putpixel((0, 0), (255, 0, 0, 255))
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.getpixel((20, 20)) == (255, 255, 255) and rgb.getpixel((0, 0)) == (255, 0, 0)
    palette = Image.new("P", (40, 40), 0)
    palette.info["transparency"] = 0
    assert load_image(palette).getpixel((5, 5)) == (255, 255, 255)


def test_remote_urls_are_not_fetched_and_say_so():
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "q", "image": "https://example.com/a.png"})
    assert "remote image URLs are not fetched" in info.value.errors()[0]["msg"]


def test_several_images_and_their_errors_name_which_one(tmp_path):
    sample = Sample.model_validate({"question": "q", "images": [png_bytes(), png_bytes(color="blue")]})
    assert len(sample.images) == 2 and sample.image is sample.images[0]
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "q", "images": [png_bytes(), str(tmp_path / "gone.png")]})
    assert "image 2 of 2" in info.value.errors()[0]["msg"]
    with pytest.raises(ValidationError):
        Sample.model_validate({"question": "q", "image": png_bytes(), "images": [png_bytes()]})


def test_a_string_is_not_a_list_of_choices_and_long_questions_are_refused():
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "q", "choices": "red"})
    assert info.value.errors()[0]["loc"] == ("choices",) and "list of options" in info.value.errors()[0]["msg"]
    assert Sample.model_validate({"question": "q", "choices": [1, 2.5]}).choices == ["1", "2.5"]
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"question": "x" * 2_000_001})
    assert info.value.errors()[0]["loc"] == ("question",) and "limit is 20,000" in info.value.errors()[0]["msg"]
    long = Sample.model_validate({"question": "x" * 30}, context={"max_question_chars": 40})
    assert len(long.question) == 30
