"""Image-folder trees to RecordIO: one class list per data root, hidden entries skipped, seeded splits.

A tree is ``<folder>/<class name>/<image file>``, as ImageNet and most data sets come. Its class folders,
sorted, are the classes; names starting with '.' (``.ipynb_checkpoints/``, macOS ``._photo.jpg``,
``.DS_Store``) are skipped and counted, and so are files without an image extension; symbolic links that
point to nothing are skipped and named. Every image goes through :func:`resnet_gluon.data.images.for_records`:
plain JPEGs are stored byte for byte, other images upright and re-encoded, GIFs, truncated or corrupt files
and images over OpenCV's size limit are refused with an error naming the file, and then nothing is written.
So are names a ``.lst`` file cannot hold (not UTF-8, or with a tab, line break or other control character).

One data root (the folder holding the record files) has one class list, ``classes.json``: the first split
prepared there writes it; a later split is numbered by it (its folders may be a subset) and a class folder
not in it is an error. It is replaced by another list only with ``overwrite``.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .._core.files import PathLike
from .recordio import RecordFiles, RecordWriter, list_name_problem, load_classes, save_classes
from .._core.deprecation import deprecated
from .._core.files import printable, short_list
from .images import for_records

__all__ = ["IMAGE_EXTENSIONS", "FolderEntries", "folder_entries", "PrepareSummary", "images_to_recordio",
           "split_images_to_recordio", "prepare_images"]

#: File names taken as images (case-insensitive); the content, not the name, decides how one is read.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp", ".gif",
                    ".jp2")


@dataclasses.dataclass(frozen=True)
class PrepareSummary:
    """What :func:`images_to_recordio` wrote (one split) and what it skipped in the image folder.

    Attributes
    ----------
    files : RecordFiles
        The ``.rec``/``.idx`` pair written (a ``.lst`` beside it).
    images : int
        Images written.
    class_names : tuple of str
        The data root's class list (``classes.json``), in label order (0.1's ``classes``, deprecated).
    reencoded : dict of str to int
        Images not stored byte for byte, by reason ('PNG', 'CMYK JPEG', 'EXIF-rotated JPEG', 'downscaled', ...).
    hidden, other : int
        Entries skipped in the image folder: names starting with '.', and files without an image extension
        or folders inside a class folder.
    broken : tuple of str
        Symbolic links to nothing, skipped (paths relative to the folder).
    replaced_class_names : tuple of str, optional
        The class list ``classes.json`` held before, when this run replaced it (``overwrite``): record files
        prepared earlier in the data root use that numbering (0.1's ``replaced_classes``, deprecated).
    """

    files: RecordFiles
    images: int
    class_names: Tuple[str, ...]
    reencoded: Dict[str, int]
    hidden: int = 0
    other: int = 0
    replaced_class_names: Optional[Tuple[str, ...]] = None
    broken: Tuple[str, ...] = ()

    @property
    def classes(self) -> Tuple[str, ...]:
        """Deprecated name of :attr:`class_names` (``classes`` is a count elsewhere, as in Gluon)."""
        deprecated("PrepareSummary.classes", "PrepareSummary.class_names")
        return self.class_names

    @property
    def replaced_classes(self) -> Optional[Tuple[str, ...]]:
        """Deprecated name of :attr:`replaced_class_names`."""
        deprecated("PrepareSummary.replaced_classes", "PrepareSummary.replaced_class_names")
        return self.replaced_class_names

    def __len__(self) -> int:
        return self.images

    def __str__(self) -> str:
        text = f"{self.files.rec}: {self.images} images, {len(self.class_names)} classes"
        if self.reencoded:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.reencoded.items()))
            text += f" ({sum(self.reencoded.values())} re-encoded: {reasons})"
        return text

    def skipped(self) -> str:
        """A line on the skipped entries ('' when none were)."""
        parts = [f"{self.hidden} hidden (name starting with '.')"] if self.hidden else []
        parts += [f"{self.other} without an image extension"] if self.other else []
        if self.broken:
            names = ", ".join(printable(name) for name in self.broken[:3]) + (", ..." if len(self.broken) > 3 else "")
            parts.append(f"{len(self.broken)} broken symbolic link{'s' if len(self.broken) > 1 else ''} ({names})")
        return f"skipped {' and '.join(parts)}" if parts else ""

    def warning(self) -> str:
        """A warning when this run replaced the data root's ``classes.json`` ('' when it did not)."""
        if not self.replaced_class_names:
            return ""
        root = os.path.dirname(self.files.rec) or "."
        replaced = list(self.replaced_class_names)
        return (f"warning: replaced {os.path.join(root, 'classes.json')} (it listed {replaced}); "
                f"record files prepared before in {root} use the old numbering: prepare them again")


@dataclasses.dataclass(frozen=True)
class FolderEntries:
    """What a folder holds, as ``prepare`` and ``predict`` sort it (names, sorted).

    ``images``: files with an image extension (:data:`IMAGE_EXTENSIONS`); ``folders``; ``hidden``: the count
    of names starting with '.'; ``other``: the count of other files; ``broken``: symbolic links to nothing.
    """

    images: Tuple[str, ...]
    folders: Tuple[str, ...]
    hidden: int
    other: int
    broken: Tuple[str, ...]


def folder_entries(folder: PathLike) -> FolderEntries:
    """Sort the entries of ``folder`` (not its sub-folders) into :class:`FolderEntries`.

    Raises
    ------
    FileNotFoundError
        ``folder`` is not a folder.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {printable(folder)} does not exist")
    images, folders, broken, hidden, other = [], [], [], 0, 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            hidden += 1
        elif entry.is_symlink() and not os.path.exists(entry.path):
            broken.append(entry.name)
        elif entry.is_dir():
            folders.append(entry.name)
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
            images.append(entry.name)
        else:
            other += 1
    return FolderEntries(tuple(images), tuple(folders), hidden, other, tuple(broken))


@dataclasses.dataclass
class _Tree:
    classes: List[str]
    files: Dict[str, List[str]]  # class name -> paths relative to the folder, sorted
    hidden: int
    other: int
    broken: List[str]


def _check_name(folder: str, rel: str) -> None:
    problem = list_name_problem(rel)
    if problem:
        raise ValueError(f"{printable(os.path.join(folder, rel))} {problem}, which a .lst file cannot hold; "
                         "rename it, or remove it")


def _scan(folder: str) -> _Tree:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {printable(folder)} does not exist")
    top = folder_entries(folder)
    tree = _Tree(list(top.folders), {}, top.hidden, top.other + len(top.images), list(top.broken))
    if not tree.classes:
        raise ValueError(f"{printable(folder)} has no class sub-folders; expected <folder>/<class name>/<image files>")
    for name in tree.classes:
        _check_name(folder, name)
        inside = folder_entries(os.path.join(folder, name))
        tree.hidden += inside.hidden
        tree.other += inside.other + len(inside.folders)
        tree.broken += [os.path.join(name, link) for link in inside.broken]
        if not inside.images:
            raise ValueError(f"class folder {printable(os.path.join(folder, name))} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        tree.files[name] = [os.path.join(name, image) for image in inside.images]
        for rel in tree.files[name]:
            _check_name(folder, rel)
    return tree


def _numbering(root: str, tree: _Tree, folder: str, overwrite: bool) -> List[str]:
    """The class list to number labels by: ``classes.json`` of ``root`` if it holds every class folder."""
    existing = load_classes(root)
    if existing is None:
        return list(tree.classes)
    unknown = [name for name in tree.classes if name not in existing]
    if not unknown:
        return list(existing)
    if overwrite:
        return list(tree.classes)
    raise ValueError(f"class folder {os.path.join(folder, unknown[0])!r} is not in "
                     f"{os.path.join(root, 'classes.json')} {short_list(existing)}; prepare the split that holds every "
                     "class first, or pass overwrite=True (--overwrite) to replace the class list")


def _ordered_map(fn: Callable, items: Sequence, threads: int) -> Iterator:
    """``map(fn, items)`` on ``threads`` threads, in order, at most a few items ahead (bounded memory; an
    exception stops the work at once)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 4 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _write(folder: str, entries: Sequence[Tuple[int, str]], writer: RecordWriter, *, num_threads: int,
           resize: Optional[int]) -> Dict[str, int]:
    """Encode ``(label, relative path)`` entries into ``writer``; returns the re-encoding reasons counted."""

    def encode(entry):
        path = os.path.join(folder, entry[1])
        with open(path, "rb") as f:
            return for_records(f.read(), name=path, resize=resize)

    reasons = collections.Counter()
    for (label, rel), (data, reason) in zip(entries, _ordered_map(encode, entries, num_threads)):
        writer.write(label, data, rel)
        if reason:
            reasons[reason] += 1
    return dict(reasons)


def _prepare(folder: PathLike, splits: Dict[str, Tuple[str, List[Tuple[int, str]]]], root: str, tree: _Tree,
             classes: List[str], *, num_threads: int, overwrite: bool,
             resize: Optional[int]) -> Dict[str, PrepareSummary]:
    """Write every split (name -> (prefix, entries)) under temporary names, then rename all and save classes."""
    folder = os.fspath(folder)
    writers = {}
    try:
        for name, (prefix, _) in splits.items():
            writers[name] = RecordWriter(prefix, overwrite=overwrite)
        reasons = {name: _write(folder, splits[name][1], writers[name], num_threads=num_threads, resize=resize)
                   for name in splits}
        files = {name: writer.commit() for name, writer in writers.items()}
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    replaced = save_classes(root, classes)
    return {name: PrepareSummary(files[name], len(splits[name][1]), tuple(classes), reasons[name], tree.hidden,
                                 tree.other, tuple(replaced) if replaced else None, tuple(tree.broken))
            for name in splits}


def _entries(tree: _Tree, classes: List[str]) -> List[Tuple[int, str]]:
    label = {name: i for i, name in enumerate(classes)}
    return [(label[name], rel) for name in tree.classes for rel in tree.files[name]]


def _shuffled(entries: List[Tuple[int, str]], seed: int) -> List[Tuple[int, str]]:
    order = np.random.RandomState(seed).permutation(len(entries))
    return [entries[i] for i in order]


def images_to_recordio(folder: PathLike, prefix: PathLike, *, num_threads: int = 4, shuffle: bool = True,
                       seed: int = 0, overwrite: bool = False, resize: Optional[int] = None) -> PrepareSummary:
    """Pack an image-folder tree (one sub-folder per class) into ``prefix.rec``/``.idx``/``.lst``.

    Parameters
    ----------
    folder : str or PathLike
        ``<folder>/<class name>/<image file>``.
    prefix : str or PathLike
        Output prefix, e.g. ``data/train``: its folder (``data``) is the data root holding ``classes.json``.
    num_threads : int
        Decoding and encoding threads.
    shuffle : bool
        Write the images in a random order (seeded by ``seed``), as ``im2rec`` does by default; otherwise
        class by class, files sorted by name.
    overwrite : bool
        Replace existing record files (and ``classes.json`` when it lacks a class of ``folder``).
    resize : int, optional
        Downscale images whose shorter side is longer to ``resize`` pixels (``im2rec --resize``); default
        keep every size.

    Returns
    -------
    PrepareSummary
        The files, counts, class list, re-encoded and skipped entries.

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    FileExistsError
        The record files exist (without ``overwrite``).
    ValueError
        ``folder`` has no class sub-folders, a class has no images, a class folder is not in the data root's
        ``classes.json``, or an image is refused (the message names the file). Nothing is written then.
    """
    folder, prefix = os.fspath(folder), os.fspath(prefix)
    if os.path.isdir(prefix):
        raise ValueError(f"{prefix!r} is a folder; the output is a prefix such as {os.path.join(prefix, 'train')!r} "
                         "(or split one folder into train and val with split_images_to_recordio / --val-fraction)")
    tree = _scan(folder)
    root = os.path.dirname(os.path.abspath(prefix))
    classes = _numbering(root, tree, folder, overwrite)
    entries = _entries(tree, classes)
    if shuffle:
        entries = _shuffled(entries, seed)
    return _prepare(folder, {"train": (prefix, entries)}, root, tree, classes, num_threads=num_threads,
                    overwrite=overwrite, resize=resize)["train"]


def _stratified(tree: _Tree, classes: List[str], val_fraction: float, seed: int):
    """Per class, ``round(n * val_fraction)`` images (at most ``n - 1``) chosen at random go to validation."""
    rng = np.random.RandomState(seed)
    label = {name: i for i, name in enumerate(classes)}
    train, val = [], []
    for name in tree.classes:
        files = tree.files[name]
        order = rng.permutation(len(files))
        count = min(len(files) - 1, math.floor(len(files) * val_fraction + 0.5))
        val += [(label[name], files[i]) for i in sorted(order[:count])]
        train += [(label[name], files[i]) for i in sorted(order[count:])]
    return train, val


def split_images_to_recordio(folder: PathLike, data_root: PathLike, *, val_fraction: float, num_threads: int = 4,
                             shuffle: bool = True, seed: int = 0, overwrite: bool = False,
                             resize: Optional[int] = None) -> Tuple[PrepareSummary, PrepareSummary]:
    """Split one image-folder tree into ``data_root/train`` and ``data_root/val`` record files.

    The split is stratified and seeded: of each class's ``n`` images, ``round(n * val_fraction)`` (at most
    ``n - 1``, so every class keeps a training image) chosen with ``seed`` go to validation, as
    ``im2rec --train-ratio`` splits for the reference's workflow (per class here). Other parameters, the
    result and the errors are those of :func:`images_to_recordio`; both splits are written or neither.

    Returns
    -------
    (PrepareSummary, PrepareSummary)
        Training and validation.

    Raises
    ------
    ValueError
        For ``val_fraction`` outside ``(0, 1)`` or one that leaves no validation image; and as
        :func:`images_to_recordio`.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    folder, data_root = os.fspath(folder), os.fspath(data_root)
    root = os.path.abspath(data_root)
    tree = _scan(folder)
    classes = _numbering(root, tree, folder, overwrite)
    train, val = _stratified(tree, classes, val_fraction, seed)
    if not val:
        raise ValueError(f"val_fraction={val_fraction} of {len(train)} images in {len(tree.classes)} classes gives "
                         "no validation image; use a larger fraction")
    if shuffle:
        train, val = _shuffled(train, seed), _shuffled(val, seed + 1)
    done = _prepare(folder, {"train": (os.path.join(data_root, "train"), train),
                                     "val": (os.path.join(data_root, "val"), val)},
                    root, tree, classes, num_threads=num_threads, overwrite=overwrite, resize=resize)
    return done["train"], done["val"]


def prepare_images(folder: PathLike, output: Optional[PathLike] = None, *, val_fraction: Optional[float] = None,
                   **options) -> List[PrepareSummary]:
    """``resnet-gluon prepare --images``: :func:`images_to_recordio` into the prefix ``output`` (default
    ``data/train``), or with ``val_fraction`` :func:`split_images_to_recordio` into the folder ``output`` (default
    ``data``). ``options`` go to either; returns the summaries written (training first)."""
    if val_fraction is not None:
        return list(split_images_to_recordio(folder, output or "data", val_fraction=val_fraction, **options))
    return [images_to_recordio(folder, output or os.path.join("data", "train"), **options)]
