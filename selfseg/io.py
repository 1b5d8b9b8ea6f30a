"""Files in and out: image input (any path, PIL image or array -> an upright RGB PIL image of bounded size,
or ImageError), input expansion, and atomic writes of outputs."""
from __future__ import annotations

import contextlib
import functools
import glob
import io
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif", ".ppm",
                  ".pgm"}
MIN_SIDE = 16  # one BLIP patch

ImageInput = Union[str, os.PathLike, "Any"]  # path, PIL.Image.Image or (H, W[, C]) array


@dataclass
class LoadedImage:
    """image: RGB PIL image, longest side <= max_side. size: (H, W) of the original, upright image."""

    image: Any
    size: tuple[int, int]
    source: str
    # What the models will not see and the result should say: frames left out, an oversized image.
    notes: list[str] = field(default_factory=list)


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files, folders (their images, sorted) and glob patterns -> a list of paths (missing ones kept,
    so that they fail with a clear message of their own)."""
    out: list[str] = []
    for item in items:
        p = Path(item)
        try:
            is_dir, exists = p.is_dir(), p.exists()
        except OSError:  # e.g. a name longer than the file system allows: load_image reports it
            out.append(item)
            continue
        if is_dir:
            try:
                # Not only regular files: a broken link or a pipe named like an image fails with its own line.
                out += sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir())
            except OSError:  # a folder that cannot be listed: one bad input, reported by load_image
                out.append(item)
        elif not exists and any(ch in item for ch in "*?["):
            out += sorted(glob.glob(item, recursive=True)) or [item]
        else:
            out.append(item)
    return out


def _empty(src: Any) -> bool:
    try:
        return isinstance(src, (str, os.PathLike)) and os.path.getsize(src) == 0
    except OSError:
        return False


def input_name(src: ImageInput) -> str:
    """How results and errors name an input: a path as given, anything else by its type (`<ndarray>`)."""
    return str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"


def load_image(src: ImageInput, max_side: int = 1024) -> LoadedImage:
    """Open, respect EXIF orientation, convert to 8-bit RGB, shrink to `max_side`; ImageError if unusable.

    JPEGs are decoded straight at reduced scale (PIL draft mode), so a huge photo never exists in memory
    at full size. Alpha is composited over white; 16-bit and float images are scaled to 8 bits.
    """
    from PIL import Image

    name = input_name(src)
    short = Path(name).name if isinstance(src, (str, os.PathLike)) else name
    notes: list[str] = []
    frame = 0  # a PIL image is used at the frame it was seeked to
    if isinstance(src, Image.Image):
        with contextlib.suppress(Exception):
            frame = int(src.tell())
    # PIL warns about an image between MAX_IMAGE_PIXELS and twice that; the warning is about this one image,
    # so it belongs in its result, not in a run's stderr (where it would not say which image).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        warnings.simplefilter("always", UserWarning)  # PIL's word on this file (a damaged EXIF block, ...)
        try:
            img, size, frames = _open(src, name, max_side)
            if min(size) < MIN_SIDE:
                raise ImageError(f"{name}: image is {size[1]}x{size[0]} px, smaller than one {MIN_SIDE}-px patch")
            img = _to_rgb(img)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name}: refused, too many pixels to decode safely ({exc})") from None
        except (OSError, SyntaxError, ValueError, TypeError) as exc:  # whatever PIL or numpy raise on odd input
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImageError(f"{name}: unreadable image ({why})") from None
    bombs = [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    about_this = [w for w in caught if issubclass(w.category, UserWarning) and w not in bombs]
    for w in caught:  # not ours to handle (deprecations, ...): passed on as they came
        if w not in bombs and w not in about_this:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if frames > 1:
        used = "the first frame" if frame == 0 else f"frame {frame} (where the image was seeked)"
        notes.append(f"{short}: {frames} frames; {used} was used")
    if bombs:
        notes.append(f"{short}: {size[0] * size[1]} pixels, more than PIL's limit of {Image.MAX_IMAGE_PIXELS} "
                     f"against decompression bombs; loaded anyway")
    notes += [f"{short}: {message}" for message in dict.fromkeys(str(w.message) for w in about_this)]
    if max(img.size) > max_side:
        shrunk = min(img.size) * max_side / max(img.size)
        if shrunk < MIN_SIDE:  # the models would see a strip under one patch wide
            raise ImageError(f"{name}: image is {size[1]}x{size[0]} px; shrunk to run.max_image_side={max_side} "
                             f"its short side would be {shrunk:.1f} px, under one {MIN_SIDE}-px patch (crop it, "
                             f"or raise run.max_image_side)")
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return LoadedImage(image=img, size=size, source=name, notes=notes)



def _frames(img: Any) -> int:
    """Frames (animation) or pages (TIFF) of an open image; 1 when it cannot tell. Only the first is used."""
    if getattr(img, "format", None) == "MPO":  # a camera JPEG's extra frames are previews of the same photo
        return 1
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:  # a damaged later frame must not make the first one unreadable
        return 1


def _open(src: ImageInput, name: str, max_side: int) -> tuple[Any, tuple[int, int], int]:
    """(image, upright (H, W), frames in the file)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        _check_regular_file(path, name)
        try:
            img = Image.open(path)
            # the stored sample layout, before anything loads the pixels (reading EXIF may, for a PNG)
            wide = img.format == "PNG" and any(str(t.args).endswith(";16B") for t in img.tile)
            size = _upright_size(img)
            frames = _frames(img)  # before load(): counting seeks through the file, then back to frame 0
            if img.format == "JPEG" and max(size) > max_side:
                # draft() picks the largest 1/2, 1/4 or 1/8 scale that still covers the request.
                scale = max_side / max(size)
                img.draft("RGB", (int(img.width * scale) + 1, int(img.height * scale) + 1))
            img.load()
            if wide and img.mode == "RGB" and img.info.get("transparency") is not None:
                # PIL cuts 16-bit RGB to 8 bits, and would match the 16-bit key against the cut values
                # (whitening unrelated pixels): the exact match is lost, so the key is not applied.
                img.info.pop("transparency")
                warnings.warn(_WIDE_KEY, UserWarning, stacklevel=2)
            # exif_transpose copies even an upright image: only call it when there is something to undo
            # (one full-size copy of a huge PNG is 144 MB).
            upright = (img.height, img.width) == size and img.getexif().get(0x0112, 1) in (1, None)
            return (img if upright else ImageOps.exif_transpose(img)), size, frames
        except UnidentifiedImageError:
            raise ImageError(f"{name}: {'an empty file' if _empty(src) else 'not an image (unrecognised format)'}"
                             ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{name}: corrupt or truncated image ({exc})") from None
    if isinstance(src, Image.Image):
        frames = _frames(src)
        img = ImageOps.exif_transpose(src)
        return img, (img.height, img.width), frames
    if isinstance(src, np.ndarray) or hasattr(src, "__array__"):
        if hasattr(src, "detach"):  # a torch tensor: off the autograd graph and the GPU first
            src = src.detach().cpu()
            if src.dtype.is_floating_point:
                src = src.float()  # numpy has no bfloat16
        try:
            a = np.asarray(src)
        except Exception as exc:  # whatever an array-like raises on conversion
            raise ImageError(f"{name}: cannot be read as an array ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        img = _from_array(a, name)
        return img, (img.height, img.width), 1
    raise ImageError(f"{name}: expected a path, PIL image or array, got {type(src).__name__}")


def _check_regular_file(path: Path, name: str) -> None:
    """One ImageError line for a path that is not a readable regular file, decided from its metadata alone:
    opening a FIFO, socket or device for reading can block forever and take the batch with it."""
    import errno
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(f"{name}: symbolic link loop") from None
        if exc.errno == errno.ENOENT:
            raise ImageError(f"{name}: no such file") from None
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        if not os.access(path, os.R_OK | os.X_OK):  # given as a folder of inputs that could not be listed
            raise ImageError(f"{name}: a folder whose images cannot be listed (permission denied)")
        raise ImageError(f"{name}: is a directory, expected an image file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ImageError(f"{name}: is {kind}, not a regular file; refused without reading it")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{name}: permission denied")


def read_text(path: str | Path, what: str) -> str:
    """A user's text file as UTF-8 (a byte-order mark dropped); one-line DatasetError naming the file and
    `what` it should be when it cannot be read or is not UTF-8 (a Latin-1 or UTF-16 file)."""
    from .errors import DatasetError

    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{what} {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                           f"{exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise DatasetError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None


def exif_orientation(img: Any) -> int:
    """The EXIF orientation (1..8) still to apply to an open PIL image as this Pillow decodes it, read from
    the header; 1 when absent, and for a TIFF that Pillow itself turns upright (its `size` is then already
    upright, though the header still holds the tag until the pixels load)."""
    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a malformed EXIF block must not make a good image unreadable
        return 1
    if orientation != 1 and img.format == "TIFF" and _pillow_orients_tiff():
        return 1
    return orientation


@functools.lru_cache(maxsize=1)
def _pillow_orients_tiff() -> bool:
    """Whether the installed Pillow applies a TIFF's orientation tag itself when it opens and loads the file
    (11 and later do, reporting the upright size at open; 10.1 to 10.4 leave it to `ImageOps.exif_transpose`;
    10.0, which turned the pixels on load but kept the tag and the stored size, is below selfseg's
    requirement). Asked of a 2 x 1 TIFF tagged "rotate 90", once."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("L", (2, 1)).save(buf, format="TIFF", exif=exif)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.size == (1, 2)


def undo_orientation(a: np.ndarray, orientation: int, copy: bool = True) -> np.ndarray:
    """An (H, W) map of an upright image back in the file's stored pixel order (the inverse of what
    `PIL.ImageOps.exif_transpose` applied for this EXIF orientation). copy=False: a flipped or transposed
    view of `a` rather than a contiguous copy (`a` itself for orientation 1 either way)."""
    undo: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: np.fliplr, 3: lambda x: np.rot90(x, 2), 4: np.flipud, 5: lambda x: x.T,
        6: lambda x: np.rot90(x, 1), 7: lambda x: np.rot90(x, 2).T, 8: lambda x: np.rot90(x, 3)}
    f = undo.get(orientation)
    if f is None:
        return a
    return np.ascontiguousarray(f(a)) if copy else f(a)


def _upright_size(img: Any) -> tuple[int, int]:
    """(H, W) after the EXIF rotation is applied, read from the header without decoding pixels."""
    w, h = img.size
    return (w, h) if exif_orientation(img) in (5, 6, 7, 8) else (h, w)


def _from_array(a: np.ndarray, name: str) -> Any:
    from PIL import Image

    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # channels first, as torchvision and transformers lay images out
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
    if a.dtype != np.uint8:
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_):
            raise ImageError(f"{name}: expected a numeric array, got dtype {a.dtype}")
        a = _to_uint8(a.astype(np.float64), a.dtype)
    return Image.fromarray(a)


#: Largest value a float image may reach and still be read as [0, 1] (cut at 1) rather than [0, 255].
_FLOAT_UNIT = 1.5
#: A float image read as [0, 255] whose largest value is below this is noted as nearly black.
_FLOAT_DARK = 16
#: Largest value a float image may reach and still be read as [0, 255] (cut at 255) rather than 16-bit levels.
_FLOAT_16_BIT = 1023


def _to_uint8(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if not np.isfinite(a).all():  # one NaN would make max() NaN, and a [0, 1] image read as [0, 255]
        raise ValueError("it holds NaN or infinite values")
    if np.issubdtype(dtype, np.floating):
        top, low = a.max(initial=0), a.min(initial=0)
        # Up to 1: [0, 1], and up to 1.5 a [0, 1] image that resampling or sharpening pushed past its range
        # (as [0, 255] it would be black). Beyond 1023, 16-bit values (a float TIFF of a 16-bit scan), as
        # integers beyond 255 are read: cut at 255 they would make the image almost white. Past 255 below that,
        # a [0, 255] image's overshoot: cut. The image's notes say what was done (these warnings become notes
        # of the image being loaded).
        shown = repr(float(top))  # exact: 255.00000000000003 is past 255
        if top > _FLOAT_16_BIT:
            warnings.warn(f"float values up to {shown}: read as 16-bit levels (divided by 257)", UserWarning,
                          stacklevel=2)
            a = a / 257.0
        elif top > 255:
            warnings.warn(f"float values up to {shown}, beyond 255: cut at 255", UserWarning, stacklevel=2)
        elif top <= _FLOAT_UNIT:
            if top > 1:
                warnings.warn(f"float values up to {shown}, read as [0, 1]: cut at 1", UserWarning, stacklevel=2)
            a = a * 255.0
        elif top < _FLOAT_DARK:  # read as [0, 255] it is nearly black: say so, whichever scale was meant
            warnings.warn(f"float values up to {shown}, read as [0, 255]: a nearly black image (a [0, 1] image "
                          f"is read as one up to {_FLOAT_UNIT})", UserWarning, stacklevel=2)
        if low < 0:
            warnings.warn(f"float values down to {low:.6g}, below 0: cut at 0 (a normalised tensor? give "
                          "pixel values in [0, 1] or [0, 255])", UserWarning, stacklevel=2)
    elif dtype == np.uint16 or a.max(initial=0) > 255:
        a = a / 257.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


_WIDE_KEY = "its 16-bit colour-key transparency was not applied (the colour is kept)"


def _to_rgb(img: Any) -> Any:
    from PIL import Image

    key = img.info.get("transparency")
    if img.mode == "F":  # 32-bit float: [0, 1] or [0, 255] like a float array
        img = Image.fromarray(_to_uint8(np.asarray(img, dtype=np.float64), np.dtype(np.float32)))
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):  # scaled as uint16 / int32 arrays are
        raw = np.asarray(img, dtype=np.float64)
        grey = _to_uint8(raw, np.dtype(np.int32 if img.mode == "I" else np.uint16))
        if isinstance(key, int):  # a 16-bit grey PNG's colour key, matched before the scaling merges levels
            grey = np.where(raw == key, np.uint8(255), grey)  # fully transparent: white, as alpha is composited
        img, key = Image.fromarray(grey), None
    elif img.mode == "RGB" and isinstance(key, tuple) and max(key) > 255:
        # PIL has already cut a 16-bit RGB PNG to 8 bits, so its 16-bit key can no longer be matched exactly.
        warnings.warn(_WIDE_KEY, UserWarning, stacklevel=2)
        key = None
    elif img.mode == "1":
        img = img.convert("L")
    if img.mode == "P" or (img.mode in ("L", "RGB") and key is not None):
        img = img.convert("RGBA")  # a palette's or a colour key's transparency, composited as alpha is
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, without changing it where the kernel reports it (Linux). Elsewhere it can only
    be read by setting it: done under a lock, with a restrictive stand-in, so that a file another thread
    creates in between is never more open than intended."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write a file whole or not at all: `write(f)` fills a temporary file beside `path` (named
    `.<name>.<8 chars>.tmp`), which then replaces `path` in one rename. A reader never sees half a file, and
    a killed writer leaves only the temporary file, which nothing reads."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp creates 0600 files; an output should get the permissions any new file of the user gets.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
