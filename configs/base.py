"""Every training key with its default. Job configs (configs/<job>.py) assign a handful of these
names; any key can be overridden on the command line as `--key value`, checked against the type
annotated here. The layout follows insightface's arcface_torch `configs/base.py` and the old
arcface_paddle `configs/config.py` (key names kept where they existed)."""

from __future__ import annotations

# -- model: a registered backbone (arcface_paddle.backbones) -> embedding [B, embedding_size]
backbone: str = "FresResNet50"
embedding_size: int = 512
dropout: float = 0.0  # iResNet output block only

# -- head: target logit scale * (cos(m1 * theta + m2) - m3) over Partial FC class centres
margin: tuple[float, ...] = (1.0, 0.5, 0.0)  # ArcFace; CosFace (1, 0, 0.4); SphereFace m1 > 1
scale: float = 64.0
straight_through: bool = False  # True: no gradient through the margin term
margin_fallback: str = "psi"  # past m1*theta + m2 = pi: "psi" (SphereFace) or "linear" (m1 = 1)
sample_ratio: float = 1.0  # share of each shard's negative centres used per step

# -- pure fp16 (CUDA only; on CPU the run trains in fp32 and says so) and loss scaling
fp16: bool = False
init_loss_scaling: float = 65536.0
incr_ratio: float = 2.0  # growth factor after incr_every_n_steps clean steps
incr_every_n_steps: int = 2000
decr_ratio: float = 0.5  # back-off factor on a step with inf/nan
min_loss_scaling: float = 1.0
max_loss_scaling: float = 16777216.0

# -- optimiser (momentum SGD) and schedule
lr: float = 0.1  # for a global batch of 512; scaled by global batch / 512
momentum: float = 0.9
weight_decay: float = 5e-4
train_unit: str = "epoch"  # "epoch" or "step": unit of train_num, warmup_num, decay_boundaries
train_num: int = 25
warmup_num: float = 0
lr_decay_type: str = "piecewise"  # "piecewise" (x lr_decay at each boundary) or "poly"
decay_boundaries: tuple[float, ...] = (10, 16, 22)
lr_decay: float = 0.1
poly_power: float = 2.0
max_steps: int | None = None  # stop early after this many steps (smoke runs); schedule unchanged

# -- data: a .rec folder, a packed folder, images + label.txt, or synthetic identities
data_format: str = "auto"  # "auto", "rec", "packed", "folder" or "synthetic"
data_dir: str = "./MS1M_v3"
label_file: str | None = None  # folder format; default <data_dir>/label.txt
num_classes: int = 93431  # 85742 for MS1M-v2, 93431 for MS1M-v3
synthetic_images_per_class: int = 16
batch_size: int = 128  # per rank; global batch = batch_size x ranks
num_workers: int = 8
random_flip: bool = True
seed: int = 2048

# -- validation on insightface .bin verification sets (<val_dir>/<target>.bin)
val_targets: tuple[str, ...] = ("lfw", "cfp_fp", "agedb_30")
val_dir: str | None = None  # default: data_dir
validation_interval_step: int = 2000  # 0: never
val_batch_size: int = 64

# -- output, logging, checkpoints
output: str = "./output/ms1mv3_r50"
log_interval_step: int = 100
visualdl: bool = True
checkpoint_interval_step: int = 2000  # and always at the end
max_num_last_checkpoint: int = 3
resume: bool = False  # continue from the newest checkpoint in <output>/checkpoints
checkpoint_dir: str | None = None  # or from this checkpoint folder
is_static: bool = False  # True: each step's forward + backward run as one static program
