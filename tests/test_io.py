"""Bad and unusual inputs: each gives a clear ImageError or a correctly converted RGB image."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfseg.errors import ImageError
from selfseg.io import expand_inputs, load_image


def _save(path, img, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.jpg", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "not an image"),
        (lambda p: _save(p / "tiny.png", Image.new("RGB", (8, 8))), "smaller than one 16-px patch"),
    ],
)
def test_unusable_inputs(tmp_path, make, message):
    with pytest.raises(ImageError, match=message):
        load_image(make(tmp_path))


def _fifo(p):
    import os

    os.mkfifo(p / "x.jpg")
    return p / "x.jpg"


def _loop(p):
    (p / "a.jpg").symlink_to(p / "b.jpg")
    (p / "b.jpg").symlink_to(p / "a.jpg")
    return p / "a.jpg"


@pytest.mark.parametrize(
    "make, message",
    [
        (_fifo, "is a FIFO, not a regular file; refused without reading it"),
        (_loop, "symbolic link loop"),
    ],
)
def test_special_files_are_refused_from_their_metadata(tmp_path, make, message):
    with pytest.raises(ImageError, match=message):
        load_image(make(tmp_path))


def test_a_fifo_among_the_inputs_does_not_hang_the_batch(tmp_path, ade_images, repo):
    """A FIFO opened for reading blocks until a writer comes: the run must refuse it and finish the rest."""
    import os
    import subprocess
    import sys

    os.mkfifo(tmp_path / "x.jpg")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "selfseg", "tag", str(ade_images[0]), str(tmp_path / "x.jpg"),
                        "--config", str(repo / "configs" / "smoke.yaml"), "--out", str(out), "-q"],
                       capture_output=True, text=True, timeout=300, cwd=repo)
    assert r.returncode == 1 and "is a FIFO" in r.stderr
    assert (out / f"{ade_images[0].stem}.json").is_file()


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(p)


@pytest.mark.parametrize(
    "img",
    [
        Image.new("L", (40, 30), 128),
        Image.new("RGBA", (40, 30), (10, 20, 30, 0)),
        Image.new("CMYK", (40, 30), (0, 255, 0, 0)),
        Image.new("P", (40, 30), 3),
        Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16)),
    ],
    ids=["gray", "rgba", "cmyk", "palette", "16bit"],
)
def test_modes_become_rgb(tmp_path, img):
    fmt = "JPEG" if img.mode == "CMYK" else "PNG"
    p = _save(tmp_path / f"x.{fmt.lower()}", img, format=fmt)
    out = load_image(p)
    assert out.image.mode == "RGB" and out.size == (30, 40)
    if img.mode == "RGBA":  # fully transparent -> composited over white
        assert out.image.getpixel((0, 0)) == (255, 255, 255)
    if img.mode.startswith("I"):  # 16-bit white stays white, not clipped noise
        assert out.image.getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_respected(tmp_path):
    img = Image.new("RGB", (60, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = _save(tmp_path / "rot.jpg", img, exif=exif, quality=95)
    out = load_image(p)
    assert out.size == (60, 20) and out.image.size == (20, 60)  # (H, W) upright; PIL size is (W, H)
    r, g, b = out.image.getpixel((10, 3))  # the left strip is now on top
    assert b > 200 and r < 60


def test_huge_jpeg_is_reduced_while_decoding(tmp_path):
    p = _save(tmp_path / "huge.jpg", Image.new("RGB", (8000, 6000), (90, 120, 30)), quality=50)
    out = load_image(p, max_side=1024)
    assert out.size == (6000, 8000)
    assert max(out.image.size) == 1024


def test_arrays_and_pil_inputs():
    a = load_image(np.zeros((32, 48, 3), dtype=np.uint8))
    assert a.size == (32, 48) and a.image.mode == "RGB"
    f = load_image(np.ones((20, 20), dtype=np.float32))
    assert f.image.getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageError, match="expected an"):
        load_image(np.zeros((4, 20, 20, 3)))
    with pytest.raises(ImageError, match="expected a path"):
        load_image(12345)
    assert load_image(Image.new("RGB", (50, 40))).size == (40, 50)


def test_expand_inputs(tmp_path):
    for n in ("b.jpg", "a.png", "skip.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert expand_inputs([str(tmp_path)]) == [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    assert expand_inputs([str(tmp_path / "*.jpg")]) == [str(tmp_path / "b.jpg")]
    (tmp_path / "c.avif").write_bytes(b"x")
    (tmp_path / "d.JFIF").write_bytes(b"x")
    assert expand_inputs([str(tmp_path)])[-2:] == [str(tmp_path / "c.avif"), str(tmp_path / "d.JFIF")]
    assert expand_inputs(["nothing/*.jpg", "missing.jpg"]) == ["nothing/*.jpg", "missing.jpg"]
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "e.jpg").write_bytes(b"x")
    assert expand_inputs([str(tmp_path / "**" / "e.jpg")]) == [str(tmp_path / "deep" / "er" / "e.jpg")]


def test_a_folders_entries_named_like_images_are_inputs_even_when_unreadable(tmp_path):
    """A broken link, a link loop, a pipe and an empty file named like images are listed, so each fails with
    its own line instead of being skipped unreported; a folder named like an image is not an input."""
    import os

    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    _loop(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "album.jpg").mkdir()
    names = [Path(x).name for x in expand_inputs([str(tmp_path)])]
    assert names == ["a.jpg", "b.jpg", "broken.jpg", "empty.jpg", "pipe.jpg"]
    with pytest.raises(ImageError, match="empty.jpg: an empty file"):
        load_image(tmp_path / "empty.jpg")


def test_a_folder_that_cannot_be_listed_is_one_bad_input(tmp_path, monkeypatch):
    """chmod 000 on a folder (as a user without root's override): the other inputs are still done."""
    import os
    from pathlib import Path

    locked = tmp_path / "locked"
    locked.mkdir()
    good = _save(tmp_path / "good.png", Image.new("RGB", (32, 32)))
    real_iterdir, real_access = Path.iterdir, os.access

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    assert expand_inputs([str(good), str(locked)]) == [str(good), str(locked)]
    with pytest.raises(ImageError, match="a folder whose images cannot be listed"):
        load_image(locked)


def test_more_bad_inputs_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a "decompression bomb" without 180 MP of test data
    p = _save(tmp_path / "bomb.png", Image.new("RGB", (100, 100)))
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(p)
    with pytest.raises(ImageError):
        load_image("x" * 300 + ".jpg")  # longer than a file name may be
    assert expand_inputs(["x" * 300 + ".jpg"]) == ["x" * 300 + ".jpg"]
    with pytest.raises(ImageError, match="numeric array"):
        load_image(np.array([["a"] * 20] * 20))


def test_float_and_bool_images_keep_their_brightness(tmp_path):
    assert load_image(Image.fromarray(np.ones((20, 20), dtype=np.float32), mode="F")).image.getpixel((0, 0)) == (
        255, 255, 255)
    assert load_image(np.ones((20, 20), dtype=bool)).image.getpixel((0, 0)) == (255, 255, 255)


def test_float_images_beyond_255_are_read_as_16_bit_values_like_integers(tmp_path):
    """A float TIFF of a 16-bit scan: cut at 255 it would read almost white; read as the same values in an
    integer array are, it keeps its levels, and the image's notes say so."""
    values = np.linspace(3598, 47545, 20 * 30).reshape(20, 30)
    as_int = np.asarray(load_image(values.round().astype(np.int32)).image)
    for given in (values.astype(np.float32), Image.fromarray(values.astype(np.float32), mode="F")):
        loaded = load_image(given)
        got = np.asarray(loaded.image)
        assert np.abs(got.astype(int) - as_int).max() <= 1 and got.min() == 14 and got.max() == 185
        assert any("read as 16-bit levels" in n for n in loaded.notes)
    _save(tmp_path / "f.tif", Image.fromarray(values.astype(np.float32), mode="F"))
    assert np.abs(np.asarray(load_image(tmp_path / "f.tif").image).astype(int) - as_int).max() <= 1


@pytest.mark.parametrize("top", [255.0, 255.5, 262.4, 1023.0])
def test_a_float_image_a_little_past_255_is_cut_there_not_rescaled(top):
    """Resampling or sharpening a [0, 255] float image overshoots its range: cut at 255 (and noted), where
    reading it as 16-bit levels would make it black."""
    values = np.linspace(0, top, 20 * 30).reshape(20, 30)
    loaded = load_image(values)
    got = np.asarray(loaded.image)[:, :, 0].astype(int)
    assert np.abs(got - np.clip(np.rint(values), 0, 255)).max() == 0
    assert any("cut at 255" in n for n in loaded.notes) == (top > 255)
    assert load_image(np.full((20, 20), 128.0)).image.getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("top", [1.0, 1.05, 1.5])
def test_a_float_image_a_little_past_1_is_read_as_0_to_1_and_cut(top):
    values = np.linspace(0, top, 20 * 30).reshape(20, 30)
    loaded = load_image(values)
    got = np.asarray(loaded.image)[:, :, 0].astype(int)
    assert np.abs(got - np.clip(np.rint(values * 255), 0, 255)).max() == 0
    assert any("read as [0, 1]: cut at 1" in n for n in loaded.notes) == (top > 1)


def test_a_float_image_read_as_nearly_black_says_so():
    """Past 1.5 a float image is [0, 255]: one whose values stay below 16 is nearly black, perhaps a [0, 1]
    image pushed further past 1; the note says which way it was read."""
    loaded = load_image(np.linspace(0, 1.6, 20 * 30).reshape(20, 30))
    assert np.asarray(loaded.image).max() == 2 and any("a nearly black image" in n for n in loaded.notes)
    assert not load_image(np.linspace(0, 200.0, 20 * 30).reshape(20, 30)).notes
    past = load_image(np.full((20, 20), 255.00000000000003))
    assert any("up to 255.00000000000003, beyond 255" in n for n in past.notes)


def test_negative_float_values_are_cut_and_noted():
    loaded = load_image(np.linspace(-1, 1, 20 * 30).reshape(20, 30))  # a normalised tensor given as is
    assert np.asarray(loaded.image).min() == 0 and any("below 0: cut at 0" in n for n in loaded.notes)


def _frames(n: int) -> list:
    return [Image.new("RGB", (40, 30), (60 * i, 0, 0)) for i in range(n)]


@pytest.mark.parametrize("suffix", [".gif", ".tif", ".png", ".webp"])
def test_a_multi_frame_image_uses_its_first_frame_and_says_so(tmp_path, suffix):
    first, *rest = _frames(3)
    p = _save(tmp_path / f"anim{suffix}", first, save_all=True, append_images=rest)
    out = load_image(p)
    assert out.notes == [f"anim{suffix}: 3 frames; the first frame was used"]
    assert out.image.getpixel((0, 0))[0] < 10  # frame 0 (black), not a later, redder one
    with Image.open(p) as opened:  # an open PIL image is noted too
        assert load_image(opened).notes == [f"<{type(opened).__name__}>: 3 frames; the first frame was used"]


def test_a_single_frame_image_has_no_notes(tmp_path):
    assert load_image(_save(tmp_path / "one.gif", _frames(1)[0])).notes == []
    assert load_image(_save(tmp_path / "one.png", _frames(1)[0])).notes == []


def test_a_decompression_bomb_warning_becomes_a_note_of_that_image(tmp_path, monkeypatch):
    import warnings

    # Between PIL's limit and twice it, PIL only warns: 100x100 px against a limit of 6000.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    p = _save(tmp_path / "big.png", Image.new("RGB", (100, 100)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may reach the run's stderr
        out = load_image(p)
    assert out.size == (100, 100)
    assert out.notes == ["big.png: 10000 pixels, more than PIL's limit of 6000 against decompression bombs; "
                         "loaded anyway"]
    assert load_image(p).notes == out.notes  # every image gets its own note, not only the first


def test_pillows_word_on_a_file_becomes_its_note_and_other_warnings_reach_the_caller(tmp_path, monkeypatch):
    """PIL warns (UserWarning) about the file it reads, a damaged EXIF block say: on stderr that line named
    no image and came once per run. Warnings of other kinds are not about the image and pass on."""
    import warnings

    import selfseg.io as sio

    real = sio._to_rgb

    def noisy(img):
        warnings.warn("Tag data larger than file", UserWarning, stacklevel=1)
        warnings.warn("something deprecated", DeprecationWarning, stacklevel=1)
        return real(img)

    monkeypatch.setattr(sio, "_to_rgb", noisy)
    path = _save(tmp_path / "x.png", Image.new("RGB", (40, 30)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = load_image(path), load_image(path)
    assert first.notes == second.notes == ["x.png: Tag data larger than file"]
    assert [str(w.message) for w in caught] == ["something deprecated"] * 2


def test_tensors_and_channels_first_arrays_read_as_the_image_they_hold(repo):
    """A tensor that requires grad failed inside numpy, and took its whole batch down; a (3, H, W) image,
    as torchvision and transformers lay one out, was three grey images to tag_many and an error to tag."""
    import torch

    from selfseg import SelfSeg

    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    want = np.asarray(load_image(pixels).image)
    chw = torch.from_numpy(pixels).permute(2, 0, 1)
    as_float = (chw.float() / 255).requires_grad_()
    for given in (pixels.transpose(2, 0, 1), chw, as_float, as_float.to(torch.bfloat16), torch.from_numpy(pixels)):
        got = np.asarray(load_image(given).image)
        tolerance = 2 if given.dtype == torch.bfloat16 else 0  # bfloat16 keeps 8 bits of mantissa
        assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= tolerance
    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml")
    items = list(seg.tag_many(chw))
    assert len(items) == 1 and items[0].ok and items[0].result.image_size == (40, 48)
    assert [it.ok for it in seg.tag_many([pixels, as_float, "/no/such.png"])] == [True, True, False]
    with pytest.raises(ImageError, match="expected a numeric array, got dtype complex128"):
        load_image(pixels.astype(np.complex128))


def test_a_strip_too_thin_to_shrink_is_refused_with_the_setting_that_shrinks_it(tmp_path):
    """16 x 10000 px passed the 16-px check, then shrank to 2 x 1024 and failed inside the processor."""
    strip = _save(tmp_path / "strip.png", Image.new("RGB", (16, 10000), (90, 120, 30)))
    with pytest.raises(ImageError, match="short side would be 1.6 px, under one 16-px patch .*run.max_image_side"):
        load_image(strip)
    assert load_image(strip, max_side=10000).image.size == (16, 10000)
    assert load_image(_save(tmp_path / "wide.png", Image.new("RGB", (1600, 25))), 1024).image.size == (1024, 16)


def test_a_32_bit_integer_image_is_scaled_as_an_integer_array_is():
    """PIL's mode I (32-bit integers) was always divided by 257, so one holding 8-bit values read black,
    while the same values as an int32 array read as they are."""
    a = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.int32)
    as_array, as_pil = np.asarray(load_image(a).image), np.asarray(load_image(Image.fromarray(a)).image)
    assert Image.fromarray(a).mode == "I" and np.array_equal(as_array, as_pil) and as_pil.mean() == 127.5
    wide = Image.fromarray(a * 257)  # beyond 8 bits: scaled, as before
    assert np.asarray(load_image(wide).image).mean() == 127.5


def test_a_float_image_with_nan_is_refused_rather_than_read_dark():
    """One NaN made max() NaN, so a [0, 1] image was read as [0, 255] (mean 0.5 of 255)."""
    a = np.full((32, 32), 0.5, dtype=np.float32)
    assert np.asarray(load_image(a).image).mean() == 128
    a[0, 0] = np.nan
    with pytest.raises(ImageError, match="holds NaN or infinite values"):
        load_image(a)


@pytest.mark.parametrize("mode, key", [("L", 0), ("RGB", (0, 0, 0))])
def test_a_colour_key_transparency_is_composited_as_transformers_does(tmp_path, mode, key):
    """PNG's tRNS colour key on a grey or RGB image: its pixels were black, transformers makes them white."""
    from transformers.image_transforms import convert_to_rgb

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).convert(mode)
    img.putpixel((0, 0), key)
    path = tmp_path / f"{mode}.png"
    img.save(path, transparency=key)
    ours = np.asarray(load_image(path).image)
    stock = np.asarray(convert_to_rgb(Image.open(path)))
    assert tuple(ours[0, 0]) == (255, 255, 255) and np.array_equal(ours, stock)


def _png(path, bits_rgb: int, rows: list, key: tuple):
    """A 16-bit PNG with a tRNS colour key, written by hand: PIL cannot write 16-bit RGB."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour = 2 if bits_rgb else 0
    raw = b"".join(b"\0" + b"".join(struct.pack(">" + "H" * len(px), *px) for px in row) for row in rows)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", len(rows[0]), len(rows), 16,
                                                                      colour, 0, 0, 0))
                     + chunk(b"tRNS", struct.pack(">" + "H" * len(key), *key))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_a_16_bit_colour_key_is_composited_or_said_to_be_kept(tmp_path):
    """A 16-bit grey PNG's keyed pixels read dark (1234 of 65535); they are transparent, so white. PIL cuts a
    16-bit RGB PNG to 8 bits before its key can be matched: the colour stays, and the note says so."""
    grey = _png(tmp_path / "grey.png", 0, [[(1234,)] * 32] * 16 + [[(40000,)] * 32] * 16, (1234,))
    loaded = load_image(grey)
    pixels = np.asarray(loaded.image)
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[31, 0]) == (156, 156, 156)
    assert loaded.notes == []
    rgb = _png(tmp_path / "rgb.png", 1, [[(1000, 2000, 3000)] * 32] * 32, (1000, 2000, 3000))
    loaded = load_image(rgb)
    assert tuple(np.asarray(loaded.image)[0, 0]) == (3, 7, 11)
    assert loaded.notes == ["rgb.png: its 16-bit colour-key transparency was not applied (the colour is kept)"]
    # A key of small 16-bit values would match PIL's 8-bit cut of unrelated bright pixels (51400 -> 200).
    dark = _png(tmp_path / "dark.png", 1, [[(200, 100, 50)] * 32] * 16 + [[(51400, 25700, 12850)] * 32] * 16,
                (200, 100, 50))
    loaded = load_image(dark)
    assert tuple(np.asarray(loaded.image)[31, 0]) == (200, 100, 50)
    assert loaded.notes == ["dark.png: its 16-bit colour-key transparency was not applied (the colour is kept)"]


def test_a_seeked_pil_image_is_used_at_its_frame_and_the_note_says_which(tmp_path):
    frames = [Image.new("RGB", (32, 32), (v, v, v)) for v in (10, 50, 90)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    gif = Image.open(tmp_path / "a.gif")
    gif.seek(2)
    loaded = load_image(gif)
    assert loaded.image.getpixel((5, 5)) == (90, 90, 90)
    assert loaded.notes == ["<GifImageFile>: 3 frames; frame 2 (where the image was seeked) was used"]


def test_one_input_given_where_a_list_is_expected_is_one_input(tmp_path, repo):
    """A path string iterated would be its characters ('.' is the working folder): taken as one input."""
    from pathlib import Path

    from selfseg import SelfSeg

    seg = SelfSeg.from_config(repo / "configs" / "smoke.yaml")
    photo = _save(tmp_path / "one.png", Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3),
                                                                                              dtype=np.uint8)))
    for given in (str(photo), Path(photo), Image.open(photo), np.asarray(Image.open(photo))):
        items = list(seg.tag_many(given))
        assert len(items) == 1 and items[0].error is None
    pixels = np.asarray(Image.open(photo))
    assert len(list(seg.tag_many(np.stack([pixels] * 2)))) == 2  # (N, H, W, C): N images
    grey = np.stack([pixels[..., 0]] * 5)  # (N, H, W): N grey images
    assert [it.error for it in seg.tag_many(grey)] == [None] * 5
    paths = np.array([str(photo), str(photo)])  # an array of paths (a table's column)
    assert [it.error for it in seg.tag_many(paths)] == [None, None]
