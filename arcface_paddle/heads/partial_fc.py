"""Partial FC: class centres sharded over the ranks, a sampled margin softmax, sparse updates.

Sharding: with C classes on W ranks, rank r owns the contiguous range
`[r * (C // W) + min(r, C % W), ... + C // W + (r < C % W))`: sizes differ by at most one, any C
and W work, and a rank may own no class at all (C < W) yet joins every collective.

Sampling (`sample_ratio < 1`): each step a shard keeps every class that is the label of some
sample in the GLOBAL batch, plus random other classes, `max(ceil(sample_ratio * C_local),
positives)` rows in all (`sampled_rows`). `sample_ratio = 1` keeps the whole shard.

Loss: cosines of L2-normalised features and sampled centres, in fp32 whatever the backbone's
dtype; the combined margin; softmax cross-entropy whose max and denominator are all-reduced over
the shards. The features are all-gathered with gradient, so each rank's backbone receives the
gradient of the global loss w.r.t. its own samples.

Update: the centres and their momentum live here, outside the Paddle optimizer, and
`apply_update` runs momentum SGD with weight decay on the sampled rows only. A dense optimizer
would decay and push every row through its momentum at every step, so centres that were not
sampled would drift; here they are left bit-for-bit untouched.
"""

from __future__ import annotations

import math

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
    """logits [N, K] (this shard's columns), labels [N] (column or -1) -> mean loss [].

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
        if logits.shape[1] != 0:
            row_max = distributed.all_reduce_max(logits.max(axis=1, keepdim=True))
            exp = paddle.exp(logits - row_max)
            row_sum = distributed.all_reduce_sum(exp.sum(axis=1, keepdim=True))
            positive = paddle.take_along_axis(logits, column, axis=1) - row_max
        else:  # a rank without classes still joins every collective, with neutral values
            row_max = distributed.all_reduce_max(zeros - math.inf)
            exp = logits
            row_sum = distributed.all_reduce_sum(zeros)
            positive = zeros
        # logit of the positive minus the row max, from the one shard that holds it
        positive = distributed.all_reduce_sum(paddle.where(has_positive, positive, zeros))
        loss = (paddle.log(row_sum) - positive).mean()
        ctx.save_for_backward(exp, row_sum, column, has_positive)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: paddle.Tensor) -> tuple[paddle.Tensor, None]:
        exp, row_sum, column, has_positive = ctx.saved_tensor()
        if exp.shape[1] == 0:
            return paddle.zeros_like(exp), None
        softmax = exp / row_sum
        minus_one = -has_positive.astype(softmax.dtype)
        grad = paddle.put_along_axis(softmax, column, minus_one, axis=1, reduce="add")
        rows = paddle.shape(exp)[0].astype(grad.dtype)
        return grad * (grad_loss / rows), None


class PartialFC(nn.Layer):
    """This rank's shard of the class centres and the margin softmax loss over all shards.

    `forward(features [B, D] any float dtype, labels [B] int64 global class ids) -> loss []`
    (float32, the mean over the W * B samples of the global batch, equal on every rank).
    After `loss.backward()`: `gradients()` lists what the loss scaler must unscale and check;
    `apply_update(lr)` is the momentum SGD step on the sampled rows.
    """

    def __init__(self, num_classes: int, embedding_size: int, sample_ratio: float = 1.0,
                 margin: tuple[float, float, float] = (1.0, 0.5, 0.0), scale: float = 64.0,
                 straight_through: bool = False, margin_fallback: str = "psi",
                 momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__()
        if not 0.0 < sample_ratio <= 1.0:
            raise ArcFaceError(f"sample_ratio must be in (0, 1], got {sample_ratio}")
        self.rank = distributed.get_rank() if rank is None else rank
        self.world_size = distributed.get_world_size() if world_size is None else world_size
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.sample_ratio = float(sample_ratio)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.class_start, self.class_stop = shard_range(num_classes, self.world_size, self.rank)
        self.num_local = self.class_stop - self.class_start
        self.num_sample = sampled_rows(self.sample_ratio, self.num_local, 0)
        self.margin = CombinedMargin(*margin, scale=scale, straight_through=straight_through,
                                     fallback=margin_fallback)
        centres = init_centres(self.class_start, self.class_stop, embedding_size, seed)
        self.register_buffer("weight", paddle.to_tensor(centres))  # [C_local, D] fp32
        self.register_buffer("velocity", paddle.zeros_like(self.weight))  # momentum of weight
        #: rows of this shard used by the last forward [K] (None: all rows)
        self.sampled_index: paddle.Tensor | None = None
        #: the centres of those rows [K, D], a leaf whose gradient `apply_update` consumes
        self.sampled_weight: paddle.Tensor | None = None

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

    def forward(self, features: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        features = paddle.cast(features, "float32")
        all_features = distributed.all_gather_with_grad(features)  # [N, D], N = W * B
        all_labels = distributed.all_gather_concat(labels.reshape([-1]).astype("int64"))
        local_labels = all_labels - self.class_start
        if self.sample_ratio < 1.0 and self.num_local > 0:
            self.sampled_index, columns = self.sample(local_labels)
            centres = paddle.gather(self.weight, self.sampled_index).detach()
        else:
            in_shard = (local_labels >= 0) & (local_labels < self.num_local)
            columns = paddle.where(in_shard, local_labels, paddle.full_like(local_labels, -1))
            self.sampled_index, centres = None, self.weight
        centres.stop_gradient = not self.training
        self.sampled_weight = centres
        cosine = paddle.matmul(nn.functional.normalize(all_features, axis=1),
                               nn.functional.normalize(centres, axis=1), transpose_y=True)
        cosine = paddle.clip(cosine, -1.0, 1.0)  # [N, K]
        logits = self.margin(cosine, columns) if self.num_local > 0 else cosine
        return _ShardedSoftmaxCrossEntropy.apply(logits, columns)

    def gradients(self) -> list[paddle.Tensor]:
        """Gradients the last backward left in this head (what the loss scaler checks)."""
        if self.sampled_weight is None or self.sampled_weight.grad is None:
            return []
        return [self.sampled_weight.grad]

    @paddle.no_grad()
    def apply_update(self, lr: float) -> None:
        """Momentum SGD with weight decay on the sampled rows, as paddle.optimizer.Momentum:
        v = momentum * v + (g + weight_decay * w); w = w - lr * v. Other rows stay untouched.

        Sampled rows are written in place (`scatter_`), so a step costs O(K * D) whatever the
        shard size: no [C_local, D] copy of the centres or their momentum is made."""
        grads = self.gradients()
        if grads:
            grad = grads[0]
            if self.sampled_index is None:
                self.velocity.set_value(self.momentum * self.velocity + grad
                                        + self.weight_decay * self.weight)
                self.weight.set_value(self.weight - lr * self.velocity)
            else:
                rows = self.sampled_index
                centres = self.sampled_weight
                velocity = (self.momentum * paddle.gather(self.velocity, rows) + grad
                            + self.weight_decay * centres)
                self.velocity.scatter_(rows, velocity)
                self.weight.scatter_(rows, centres - lr * velocity)
        self.clear_gradients()

    def clear_gradients(self) -> None:
        if self.sampled_weight is not None:
            self.sampled_weight.clear_gradient()
        self.sampled_index = self.sampled_weight = None
