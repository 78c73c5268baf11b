"""Training datasets and their per-rank batching.

A reader maps `i -> (encoded image bytes, class index)` and knows `num_classes`: the `.rec`
folder (`recordio.RecFaceReader`), the packed folder (`packed.PackedReader`), an image folder
with `label.txt` (`ImageFolderReader`), or learnable synthetic identities (`SyntheticFaces`,
which hands out decoded RGB arrays instead of bytes). `FaceDataset` turns a reader into
normalised CHW tensors with a random flip, and `GlobalBatchSampler` deals each rank its slice of
every global batch.

Everything random is a function of (seed, epoch, sample index): flips do not depend on which
worker or rank loads a sample, and a run resumed at step s (even on another number of ranks)
sees exactly the global batches it would have seen.

A sample that cannot be loaded (an undecodable image, a corrupt shard) is an `ArcFaceError`
naming the file and record, whichever process loads it, and `FaceLoader` makes it end every
rank: the ranks agree after each batch whether any of them failed (one scalar all-reduce), so
none is left waiting in a collective for a rank that died.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import paddle

from .. import distributed
from ..errors import ArcFaceError
from ..lifetime import dataloader_worker_init
from .label_file import LABEL_FILE, read_label_file
from .transforms import decode_rgb, hflip_chw, normalize_chw

IMAGE_SIZE = 112
FORMATS = ("auto", "rec", "packed", "folder", "synthetic")

#: an encoded image, or (synthetic data) an RGB uint8 array [112, 112, 3]
Image = bytes | np.ndarray


class FaceReader(Protocol):
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[Image, int]: ...

    def describe(self, i: int) -> str:
        """Which file and record sample i comes from, for error messages."""
        ...


class ImageFolderReader:
    """Images listed in a `label.txt` (`relative/path<TAB>class index`), read as bytes."""

    def __init__(self, label_file: str | os.PathLike[str]) -> None:
        self.label_file = Path(label_file)
        self.root = self.label_file.parent
        entries = read_label_file(self.label_file)
        if not entries:
            raise ArcFaceError(f"{self.label_file}: no images listed")
        self.paths = [relative for relative, _ in entries]
        self.labels = np.asarray([label for _, label in entries], dtype=np.int64)
        self.num_classes = int(self.labels.max()) + 1

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, i: int) -> str:
        return f"{self.root / self.paths[i]} (image {i} of {self.label_file})"

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        path = self.root / self.paths[i]
        try:
            return path.read_bytes(), int(self.labels[i])
        except OSError as exc:
            raise ArcFaceError(f"{self.describe(i)}: {exc.strerror or exc}") from None


class SyntheticFaces:
    """Identities a small network can learn and that generalise to unseen identities.

    Identity c is a fixed smooth random colour pattern (a 7x7x3 Gaussian field upsampled to
    112x112, drawn from (seed, c)); each of its images is that pattern shifted by up to
    `max_shift` pixels, with brightness/contrast jitter and pixel noise (drawn from
    (seed, c, k)). Held-out identities: same construction with another seed.
    """

    def __init__(self, num_classes: int, images_per_class: int, seed: int = 0,
                 max_shift: int = 8, noise: float = 24.0) -> None:
        if num_classes < 1 or images_per_class < 1:
            raise ArcFaceError("synthetic data needs num_classes >= 1 and "
                               "synthetic_images_per_class >= 1")
        self.num_classes = num_classes
        self.images_per_class = images_per_class
        self.seed = seed
        self.max_shift = max_shift
        self.noise = noise

    def __len__(self) -> int:
        return self.num_classes * self.images_per_class

    def template(self, label: int) -> np.ndarray:
        """Identity `label` -> float32 [112, 112, 3] around 128."""
        field = np.random.default_rng([self.seed, label]).normal(size=(7, 7, 3))
        smooth = cv2.resize(field.astype(np.float32), (IMAGE_SIZE, IMAGE_SIZE),
                            interpolation=cv2.INTER_CUBIC)
        return 128.0 + 45.0 * smooth

    def image(self, label: int, k: int) -> np.ndarray:
        """The k-th image of identity `label` -> uint8 RGB [112, 112, 3]."""
        rng = np.random.default_rng([self.seed, label, k, 1])
        dx, dy = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
        shifted = np.roll(self.template(label), (int(dy), int(dx)), axis=(0, 1))
        jittered = (shifted - 128.0) * rng.uniform(0.8, 1.2) + 128.0 + rng.uniform(-20, 20)
        noisy = jittered + rng.normal(0.0, self.noise, size=shifted.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)

    def describe(self, i: int) -> str:
        return f"synthetic image {i}"

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        label, k = divmod(int(i), self.images_per_class)
        return self.image(label, k), label


def synthetic_verification_pairs(num_pairs: int, seed: int, num_identities: int = 64
                                 ) -> tuple[list[bytes], np.ndarray]:
    """Pairs of held-out synthetic identities -> (PNG images [2N] as (a0, b0, ...), issame [N]),
    half of them same-identity, ready for `verification_bin.save_verification_bin`."""
    faces = SyntheticFaces(num_identities, images_per_class=2 * num_pairs, seed=seed)
    rng = np.random.default_rng([seed, 2])
    images, issame = [], np.arange(num_pairs) % 2 == 0
    for n, same in enumerate(issame):
        a = int(rng.integers(num_identities))
        b = a if same else int((a + rng.integers(1, num_identities)) % num_identities)
        for label, k in ((a, 2 * n), (b, 2 * n + 1)):
            _, png = cv2.imencode(".png", cv2.cvtColor(faces.image(label, k), cv2.COLOR_RGB2BGR))
            images.append(png.tobytes())
    return images, issame


def detect_format(data_dir: str | os.PathLike[str], label_file: str | None = None) -> str:
    """Which reader a data folder needs: "rec", "packed" or "folder"."""
    root = Path(data_dir)
    if label_file is not None:
        return "folder"
    if not root.is_dir():
        why = "is not a folder" if root.exists() else "no such folder"
        raise ArcFaceError(f"--data_dir {root}: {why}")
    if (root / "train.rec").is_file():
        return "rec"
    if (root / "meta.json").is_file():
        return "packed"
    if (root / LABEL_FILE).is_file():
        return "folder"
    raise ArcFaceError(f"--data_dir {root}: found no train.rec, packed meta.json or {LABEL_FILE};"
                       " set --data_format")


def open_reader(data_dir: str, data_format: str = "auto", label_file: str | None = None,
                num_classes: int | None = None, images_per_class: int = 16,
                seed: int = 0) -> FaceReader:
    """The reader for a dataset, auto-detected from the folder unless `data_format` says."""
    if data_format not in FORMATS:
        raise ArcFaceError(f"--data_format must be one of {', '.join(FORMATS)}, "
                           f"got {data_format!r}")
    if data_format == "synthetic":
        if num_classes is None:
            raise ArcFaceError("synthetic data needs --num_classes")
        return SyntheticFaces(num_classes, images_per_class, seed)
    if data_format == "auto":
        data_format = detect_format(data_dir, label_file)
    if data_format == "rec":
        from .recordio import RecFaceReader

        return RecFaceReader(data_dir)
    if data_format == "packed":
        from .packed import PackedReader

        return PackedReader(data_dir)
    return ImageFolderReader(label_file or Path(data_dir) / LABEL_FILE)


def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """Whether sample `index` is mirrored in `epoch`: a coin drawn from (seed, epoch, index)."""
    return bool(np.random.default_rng([seed, epoch, index, 3]).random() < 0.5)


class FaceDataset(paddle.io.Dataset):
    """`dataset[(index, epoch)]` -> (image float32 [3, 112, 112], label int64).

    Keys carry the epoch so the random flip is reproducible wherever the sample is loaded.
    """

    def __init__(self, reader: FaceReader, random_flip: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.reader = reader
        self.num_classes = int(reader.num_classes)
        self.random_flip = random_flip
        self.seed = seed

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[np.ndarray, np.int64]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        try:
            return self._load(index, epoch)
        except ArcFaceError:
            raise
        except Exception as exc:  # a reader or decoder failing in a way of its own: name it
            raise ArcFaceError(f"{self._describe(index)}: {type(exc).__name__}: {exc}") from exc

    def _describe(self, index: int) -> str:
        describe = getattr(self.reader, "describe", None)
        return describe(index) if describe else f"{type(self.reader).__name__} image {index}"

    def _load(self, index: int, epoch: int) -> tuple[np.ndarray, np.int64]:
        image, label = self.reader[index]
        if isinstance(image, np.ndarray) and image.ndim == 3:
            rgb = image
        else:
            rgb = decode_rgb(image, self._describe(index))
        if rgb.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ArcFaceError(f"{self._describe(index)}: {rgb.shape[1]}x{rgb.shape[0]} pixels; "
                               f"training expects aligned {IMAGE_SIZE}x{IMAGE_SIZE} faces")
        if not 0 <= label < self.num_classes:
            raise ArcFaceError(f"{self._describe(index)}: label {label} outside "
                               f"0..{self.num_classes - 1}")
        chw = normalize_chw(rgb)
        if self.random_flip and flip_decision(self.seed, epoch, index):
            chw = hflip_chw(chw)
        return chw, np.int64(label)


class GlobalBatchSampler(paddle.io.Sampler):
    """This rank's share of each global batch, as dataset keys `(index, epoch)`.

    Epoch e shuffles all samples with a permutation drawn from (seed, e) and cuts it into
    `len(self)` global batches (the remainder is dropped); rank r takes rows
    [r * B, (r + 1) * B) of each, B = global_batch / world_size. `set_epoch(e, first_batch)`
    starts mid-epoch, which is how a resumed run skips the batches it has already trained on.
    """

    def __init__(self, num_samples: int, global_batch: int, rank: int, world_size: int,
                 seed: int = 0, shuffle: bool = True) -> None:
        if global_batch % world_size:
            raise ArcFaceError(f"global batch {global_batch} does not split over "
                               f"{world_size} ranks")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.first_batch = 0

    def __len__(self) -> int:
        return self.num_samples // self.global_batch

    def set_epoch(self, epoch: int, first_batch: int = 0) -> None:
        self.epoch, self.first_batch = epoch, first_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
                 if self.shuffle else np.arange(self.num_samples))
        lo = self.rank * self.local_batch
        for b in range(self.first_batch, len(self)):
            batch = order[b * self.global_batch + lo:b * self.global_batch + lo
                          + self.local_batch]
            yield [(int(i), self.epoch) for i in batch]


#: bytes of a failed sample's error message handed back by a DataLoader worker
MESSAGE_BYTES = distributed.MESSAGE_BYTES


class _ReportingDataset(paddle.io.Dataset):
    """`FaceDataset` for DataLoader workers: a sample that fails comes back as data, (zero
    image, label -1, its message as bytes), and the others with an empty message. Raised in a
    worker, Paddle re-raises the error in a feeding thread of its own, prints the traceback
    there and hands the training loop only "Blocking queue is killed"."""

    def __init__(self, dataset: FaceDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.int64, np.ndarray]:
        message = np.zeros(MESSAGE_BYTES, np.uint8)
        try:
            image, label = self.dataset[key]
        except ArcFaceError as exc:
            data = str(exc).encode("utf-8")[:MESSAGE_BYTES]
            message[:len(data)] = np.frombuffer(data, np.uint8)
            return np.zeros((3, IMAGE_SIZE, IMAGE_SIZE), np.float32), np.int64(-1), message
        return image, label, message


def _first_message(messages: paddle.Tensor) -> str | None:
    """[B, MESSAGE_BYTES] uint8 -> the first non-empty message, or None."""
    rows = messages.numpy()
    failed = np.flatnonzero(rows.any(axis=1))
    if not failed.size:
        return None
    return rows[failed[0]].tobytes().rstrip(b"\0").decode("utf-8", "replace")


class FaceLoader:
    """Batches of (images float32 [B, 3, 112, 112], labels int64 [B]) in the sampler's order.

    `num_workers` 0 loads in this process (Paddle's single-process DataLoader hangs for good
    when the dataset raises in its feeding thread); more uses Paddle's worker processes. Either
    way a sample that fails to load ends every rank with the same one-line `ArcFaceError`
    (module docstring)."""

    def __init__(self, dataset: FaceDataset, sampler: GlobalBatchSampler,
                 num_workers: int) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.sampler)

    def _in_process(self) -> Iterator[tuple[paddle.Tensor, paddle.Tensor]]:
        for keys in self.sampler:
            samples = [self.dataset[key] for key in keys]
            yield (paddle.to_tensor(np.stack([image for image, _ in samples])),
                   paddle.to_tensor(np.asarray([label for _, label in samples], np.int64)))

    def _batches(self) -> Iterator[tuple[paddle.Tensor, paddle.Tensor]]:
        if self.num_workers == 0:
            yield from self._in_process()
            return
        loader = paddle.io.DataLoader(_ReportingDataset(self.dataset), batch_sampler=self.sampler,
                                      num_workers=self.num_workers, use_shared_memory=True,
                                      worker_init_fn=dataloader_worker_init())
        for images, labels, messages in loader:
            message = _first_message(messages)
            if message is not None:
                raise ArcFaceError(message)
            yield images, labels

    def __iter__(self) -> Iterator[tuple[paddle.Tensor, paddle.Tensor]]:
        batches = self._batches()
        while True:
            batch, error = None, None
            try:
                batch = next(batches)
            except StopIteration:
                pass  # every rank's sampler has the same length: all stop together
            except ArcFaceError as exc:
                error = str(exc)
            except (RuntimeError, SystemError) as exc:  # a worker died (killed, out of memory)
                if "DataLoader" not in str(exc):
                    raise
                error = f"data loader: {str(exc).strip().splitlines()[0]}"
            failure = distributed.first_failure(error)
            if failure is not None:
                raise distributed.AgreedError(failure)
            if batch is None:
                return
            yield batch


def build_loader(dataset: FaceDataset, sampler: GlobalBatchSampler, num_workers: int
                 ) -> FaceLoader:
    """Batches of (images float32 [B, 3, 112, 112], labels int64 [B]) in the sampler's order."""
    return FaceLoader(dataset, sampler, num_workers)
