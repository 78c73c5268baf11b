"""Partial FC: class centres sharded over the ranks, a sampled margin softmax, sparse updates.

Sharding: with C classes on W ranks, rank r owns the contiguous range
`[r * (C // W) + min(r, C % W), ... + C // W + (r < C % W))`: sizes differ by at most one, any C
and W work, and a rank may own no class at all (C < W) yet joins every collective.

Sampling (`sample_ratio < 1`): each step a shard keeps every class that is the label of some
sample in the GLOBAL batch, plus random other classes, `max(ceil(sample_ratio * C_local),
positives)` rows in all (`sampled_rows`). `sample_ratio = 1` keeps the whole shard.

One step, as values (nothing of a step is stored on a module, so the loss traces under
`paddle.jit.to_static`):
1. `PartialFC.select(global labels)` -> `Selection` (sampled rows, labels as their columns),
   eager, before the step's program;
2. `Selection.centres(head)` -> the sampled centres [K, D], a leaf that receives a gradient;
3. `PartialFCLoss(features, centres, columns)` -> loss: cosines of L2-normalised features and
   centres in fp32 whatever the backbone's dtype, the combined margin, and a softmax
   cross-entropy whose max and denominator are all-reduced over the shards. The features are
   all-gathered with gradient, so each rank's backbone receives the gradient of the global
   loss w.r.t. its own samples;
4. `SampledMomentum.step` updates the sampled rows of the centres and their momentum. A dense
   optimizer would decay and push every row through its momentum at every step, so centres
   that were not sampled would drift; here they stay bit-for-bit untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import paddle
from paddle import nn
from paddle.autograd import PyLayer

from .. import distributed
from ..errors import ArcFaceError
from .margin import CombinedMargin

#: classes per block of the rank-independent initialisation (see `init_centres`)
INIT_BLOCK = 4096
INIT_STD = 0.01


def shard_range(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """Contiguous class range [start, stop) owned by `rank`; sizes differ by at most one."""
    if num_classes < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ArcFaceError(f"cannot shard {num_classes} classes for rank {rank} of {world_size}")
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + int(rank < extra)


def sampled_rows(sample_ratio: float, num_local: int, num_positive: int) -> int:
    """Rows a shard uses in one step: ceil(ratio * C_local), never fewer than its positives."""
    if sample_ratio >= 1.0:
        return num_local
    return min(num_local, max(math.ceil(sample_ratio * num_local), num_positive))


def init_centres(class_start: int, class_stop: int, dim: int, seed: int) -> np.ndarray:
    """Initial centres of classes [start, stop) -> float32 [stop - start, dim], N(0, 0.01).

    Drawn in fixed blocks of classes, each from its own seed, so a class gets the same vector
    whatever the number of ranks.
    """
    rows = []
    for block in range(class_start // INIT_BLOCK, -(-class_stop // INIT_BLOCK)):
        values = np.random.default_rng([seed, block]).normal(
            0.0, INIT_STD, size=(INIT_BLOCK, dim)).astype(np.float32)
        lo = max(class_start, block * INIT_BLOCK) - block * INIT_BLOCK
        hi = min(class_stop, (block + 1) * INIT_BLOCK) - block * INIT_BLOCK
        rows.append(values[lo:hi])
    return np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)


class _ShardedSoftmaxCrossEntropy(PyLayer):
    """logits [N, K] (this shard's columns, K >= 1, -inf for none), labels [N] (column or -1)
    -> mean loss [].

    Softmax over the columns of all shards: the row max and the row sum of exponentials are
    all-reduced, and so is the positive logit, which lives on exactly one shard. The backward is
    the analytic (softmax - one_hot) / N of this shard's columns.
    """

    @staticmethod
    def forward(ctx, logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        labels = labels.unsqueeze(1)  # [N, 1]
        has_positive = labels >= 0
        column = paddle.where(has_positive, labels, paddle.zeros_like(labels))
        zeros = paddle.zeros_like(column, dtype=logits.dtype)  # [N, 1]
        row_max = distributed.all_reduce_max(logits.max(axis=1, keepdim=True))
        exp = paddle.exp(logits - row_max)
        row_sum = distributed.all_reduce_sum(exp.sum(axis=1, keepdim=True))
        positive = paddle.take_along_axis(logits, column, axis=1) - row_max
        # logit of the positive minus the row max, from the one shard that holds it
        positive = distributed.all_reduce_sum(paddle.where(has_positive, positive, zeros))
        loss = (paddle.log(row_sum) - positive).mean()
        ctx.save_for_backward(exp, row_sum, column, has_positive)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: paddle.Tensor) -> tuple[paddle.Tensor, None]:
        exp, row_sum, column, has_positive = ctx.saved_tensor()
        softmax = exp / row_sum
        minus_one = -has_positive.astype(softmax.dtype)
        grad = paddle.put_along_axis(softmax, column, minus_one, axis=1, reduce="add")
        rows = paddle.shape(exp)[0].astype(grad.dtype)
        return grad * (grad_loss / rows), None


class PartialFCLoss(nn.Layer):
    """features [B, D] any float dtype, centres [K, D] fp32 (this shard's sampled rows),
    columns [W * B] int64 (each global sample's column among them, or -1) -> loss [] fp32, the
    mean over the global batch, equal on every rank. Holds no state but the margin."""

    def __init__(self, margin: CombinedMargin, has_classes: bool) -> None:
        super().__init__()
        self.margin = margin
        #: False on a rank that owns no class (C < W): fixed for the run
        self.has_classes = has_classes

    def forward(self, features: paddle.Tensor, centres: paddle.Tensor,
                columns: paddle.Tensor) -> paddle.Tensor:
        features = paddle.cast(features, "float32")
        all_features = distributed.all_gather_with_grad(features)  # [N, D], N = W * B
        cosine = paddle.matmul(nn.functional.normalize(all_features, axis=1),
                               nn.functional.normalize(centres, axis=1), transpose_y=True)
        cosine = paddle.clip(cosine, -1.0, 1.0)  # [N, K]
        # the placeholder column of a rank without classes (`Selection.centres`): a logit of
        # -inf adds exp(-inf) = 0 to every sum, so this rank joins each collective with neutral
        # terms and gets a zero gradient; multiplying keeps the loss a function of the
        # features, so a static program keeps the backward (and its all-reduce)
        logits = self.margin(cosine, columns) if self.has_classes else cosine * 0.0 - math.inf
        return _ShardedSoftmaxCrossEntropy.apply(logits, columns)


@dataclass(frozen=True)
class Selection:
    """One step's choice of centres on one shard."""

    #: sampled rows of the shard [K] ascending int64, or None for the whole shard
    index: paddle.Tensor | None
    #: each global sample's column among those rows [N] int64, -1 if its class is elsewhere
    columns: paddle.Tensor

    def centres(self, head: PartialFC) -> paddle.Tensor:
        """The selected centres [K, D] as a leaf that collects their gradient (a view of the
        shard when it is used whole). A shard without classes gets one zero placeholder row
        that no loss term reads: Paddle's static backward kernels reject zero-size tensors."""
        if head.num_local == 0:
            centres = paddle.zeros([1, head.embedding_size], "float32")
        elif self.index is None:
            centres = head.weight.detach()
        else:
            centres = paddle.gather(head.weight, self.index)
        centres.stop_gradient = False
        return centres


class PartialFC(nn.Layer):
    """This rank's shard of the class centres (buffers `weight` and `velocity`, fp32) and the
    loss over all shards (`self.loss`, a `PartialFCLoss`).

    `forward(features [B, D], labels [B]) -> (loss [], centres [K, D], selection)` runs the
    three parts of a step in one call for callers outside a train step (tests, benchmarks);
    after `loss.backward()`, `centres.grad` is what `SampledMomentum.step` consumes.
    """

    def __init__(self, num_classes: int, embedding_size: int, sample_ratio: float = 1.0,
                 margin: tuple[float, float, float] = (1.0, 0.5, 0.0), scale: float = 64.0,
                 straight_through: bool = False, margin_fallback: str = "psi",
                 seed: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__()
        if not 0.0 < sample_ratio <= 1.0:
            raise ArcFaceError(f"sample_ratio must be in (0, 1], got {sample_ratio}")
        self.rank = distributed.get_rank() if rank is None else rank
        self.world_size = distributed.get_world_size() if world_size is None else world_size
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.sample_ratio = float(sample_ratio)
        self.class_start, self.class_stop = shard_range(num_classes, self.world_size, self.rank)
        self.num_local = self.class_stop - self.class_start
        self.num_sample = sampled_rows(self.sample_ratio, self.num_local, 0)
        margin_layer = CombinedMargin(*margin, scale=scale, straight_through=straight_through,
                                      fallback=margin_fallback)
        self.loss = PartialFCLoss(margin_layer, has_classes=self.num_local > 0)
        centres = init_centres(self.class_start, self.class_stop, embedding_size, seed)
        self.register_buffer("weight", paddle.to_tensor(centres))  # [C_local, D] fp32
        self.register_buffer("velocity", paddle.zeros_like(self.weight))  # momentum of weight

    @property
    def margin(self) -> CombinedMargin:
        return self.loss.margin

    def extra_repr(self) -> str:
        return (f"classes [{self.class_start}, {self.class_stop}) of {self.num_classes}, "
                f"dim={self.embedding_size}, sample_ratio={self.sample_ratio}")

    def sample(self, local_labels: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """local_labels [N] (label - class_start, any value) -> (rows [K] ascending int64,
        labels [N] as columns of those rows or -1). Every positive is kept; negatives are
        random (paddle's global generator: seed it per step for reproducible runs)."""
        in_shard = (local_labels >= 0) & (local_labels < self.num_local)
        # class C_local is a spare slot for samples of other shards
        slot = paddle.where(in_shard, local_labels, paddle.full_like(local_labels, self.num_local))
        is_positive = paddle.zeros([self.num_local + 1], "float32").scatter(
            slot, paddle.ones_like(slot, dtype="float32"))[:self.num_local]
        keep = paddle.maximum(paddle.to_tensor(self.num_sample, "int64"),
                              is_positive.sum().astype("int64"))
        # positives score in [2, 3), negatives in [0, 1): the `keep` best hold every positive
        score = paddle.uniform([self.num_local], "float32", 0.0, 1.0) + 2.0 * is_positive
        order = paddle.argsort(score, descending=True)
        place = paddle.zeros([self.num_local], "int64").scatter(
            order, paddle.arange(self.num_local, dtype="int64"))
        rows = paddle.nonzero(place < keep).reshape([-1])
        column_of = paddle.full([self.num_local + 1], -1, "int64").scatter(
            rows, paddle.cumsum(paddle.ones_like(rows)) - 1)
        return rows, paddle.gather(column_of, slot)

    @paddle.no_grad()
    def select(self, global_labels: paddle.Tensor) -> Selection:
        """global_labels [N] (the labels of the global batch, rank order) -> this step's
        `Selection`. Eager: sampling sizes depend on the labels."""
        local_labels = global_labels.reshape([-1]).astype("int64") - self.class_start
        if self.sample_ratio < 1.0 and self.num_local > 0:
            index, columns = self.sample(local_labels)
            return Selection(index, columns)
        in_shard = (local_labels >= 0) & (local_labels < self.num_local)
        return Selection(None, paddle.where(in_shard, local_labels,
                                            paddle.full_like(local_labels, -1)))

    def forward(self, features: paddle.Tensor, labels: paddle.Tensor
                ) -> tuple[paddle.Tensor, paddle.Tensor, Selection]:
        selection = self.select(distributed.all_gather_concat(labels.reshape([-1])))
        centres = selection.centres(self)
        return self.loss(features, centres, selection.columns), centres, selection


class SampledMomentum:
    """Momentum SGD with weight decay on the selected rows of a Partial FC shard, as
    paddle.optimizer.Momentum computes it: v = momentum * v + (g + weight_decay * w);
    w = w - lr * v. Other rows stay untouched. Selected rows are written in place
    (`scatter_`), so a step costs O(K * D) whatever the shard size."""

    def __init__(self, momentum: float = 0.9, weight_decay: float = 5e-4) -> None:
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)

    @paddle.no_grad()
    def step(self, head: PartialFC, selection: Selection, centres: paddle.Tensor,
             grad: paddle.Tensor, lr: float) -> None:
        """centres [K, D]: the values the step computed with; grad [K, D] their gradient."""
        if selection.index is None:
            head.velocity.set_value(self.momentum * head.velocity + grad
                                    + self.weight_decay * head.weight)
            head.weight.set_value(head.weight - lr * head.velocity)
            return
        rows = selection.index
        velocity = (self.momentum * paddle.gather(head.velocity, rows) + grad
                    + self.weight_decay * centres)
        head.velocity.scatter_(rows, velocity)
        head.weight.scatter_(rows, centres - lr * velocity)
