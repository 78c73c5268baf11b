"""Every training key with its default. Job configs (configs/<job>.py) assign a handful of these
names; any key can be overridden on the command line as `--key value`, checked against the type
annotated here. The layout follows insightface's arcface_torch `configs/base.py` and the old
arcface_paddle `configs/config.py` (key names kept where they existed).

The comment after each key is its help: `tools/train.py --help` prints it, so every key has one
line saying what it means (tests/test_config.py checks that none is missing).
"""

from __future__ import annotations

# -- model: a registered backbone (arcface_paddle.backbones) -> embedding [B, embedding_size]
backbone: str = "FresResNet50"  # registered backbone name (FresResNet50, MobileFaceNet, ...)
embedding_size: int = 512  # length of the face embedding the backbone outputs
dropout: float = 0.0  # dropout before the embedding layer (iResNet output block only)

# -- head: target logit scale * (cos(m1 * theta + m2) - m3) over Partial FC class centres
margin: tuple[float, ...] = (1.0, 0.5, 0.0)  # m1,m2,m3: ArcFace 1,0.5,0; CosFace 1,0,0.4
scale: float = 64.0  # logit scale s applied to the margin-adjusted cosines
straight_through: bool = False  # True: no gradient through the margin term
margin_fallback: str = "psi"  # past m1*theta+m2 = pi: "psi" (SphereFace) or "linear" (m1 = 1)
sample_ratio: float = 1.0  # share of each shard's negative centres used per step, in (0, 1]

# -- pure fp16 (CUDA only; on CPU the run trains in fp32 and says so) and loss scaling
fp16: bool = False  # pure fp16 backbone with fp32 master weights (GPU only)
init_loss_scaling: float = 65536.0  # starting loss scale under fp16
incr_ratio: float = 2.0  # growth factor after incr_every_n_steps clean steps
incr_every_n_steps: int = 2000  # clean steps before the loss scale grows
decr_ratio: float = 0.5  # back-off factor on a step with inf/nan
min_loss_scaling: float = 1.0  # the loss scale never drops below this
max_loss_scaling: float = 16777216.0  # the loss scale never grows above this

# -- optimiser (momentum SGD) and schedule
lr: float = 0.1  # peak learning rate for a global batch of 512; scaled by global batch / 512
momentum: float = 0.9  # SGD momentum, in [0, 1)
weight_decay: float = 5e-4  # L2 weight decay of backbone and class centres
train_unit: str = "epoch"  # "epoch" or "step": unit of train_num, warmup_num, decay_boundaries
train_num: int = 25  # length of the schedule, in train_unit
warmup_num: float = 0  # linear warm-up from 0 to lr, in train_unit
lr_decay_type: str = "piecewise"  # "piecewise" (x lr_decay at each boundary) or "poly"
decay_boundaries: tuple[float, ...] = (10, 16, 22)  # piecewise: where lr is multiplied by lr_decay
lr_decay: float = 0.1  # piecewise: factor applied at each decay boundary
poly_power: float = 2.0  # poly: lr falls as (1 - progress) ** poly_power after warm-up
max_steps: int | None = None  # stop early after this many steps (smoke runs); schedule unchanged

# -- data: a .rec folder, a packed folder, images + label.txt, or synthetic identities
data_format: str = "auto"  # "auto" (detect from data_dir), "rec", "packed", "folder", "synthetic"
data_dir: str = "./MS1M_v3"  # dataset folder (train.rec, packed meta.json or label.txt)
label_file: str | None = None  # folder format: the label file; default <data_dir>/label.txt
num_classes: int = 93431  # identities in the data: 85742 for MS1M-v2, 93431 for MS1M-v3
synthetic_images_per_class: int = 16  # synthetic data: images drawn per identity
batch_size: int = 128  # images per rank and step; global batch = batch_size x ranks
num_workers: int = 8  # DataLoader worker processes per rank; 0 loads in the training process
random_flip: bool = True  # mirror half of the training images (drawn from seed and epoch)
seed: int = 2048  # seed of every random choice: data order, flips, init, sampling

# -- validation on insightface .bin verification sets (<val_dir>/<target>.bin)
val_targets: tuple[str, ...] = ("lfw", "cfp_fp", "agedb_30")  # verification sets to score
val_dir: str | None = None  # folder of the <target>.bin files; default: data_dir
validation_interval_step: int = 2000  # validate every this many steps and at the end; 0: never
val_batch_size: int = 64  # images per forward pass during validation

# -- output, logging, checkpoints
output: str = "./output/ms1mv3_r50"  # run folder: config, logs, VisualDL, checkpoints
log_interval_step: int = 100  # console/VisualDL line every this many steps (means over them)
visualdl: bool = True  # write VisualDL scalars to <output>/vdl
checkpoint_interval_step: int = 2000  # save every this many steps, and always at the end; 0: end
max_num_last_checkpoint: int = 3  # checkpoints kept (oldest removed first); 0 keeps all
resume: bool = False  # continue from the newest checkpoint in <output>/checkpoints
checkpoint_dir: str | None = None  # continue from this checkpoint folder instead
is_static: bool = False  # True: each step's forward + backward run as one static program
