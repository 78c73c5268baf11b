"""A minutes-long CPU run on synthetic identities: the smoke test of the whole pipeline and the
config the tests start from (they swap in a smaller test backbone with --backbone).

Global batch 32 (16 per rank on 2 ranks): lr 1.6 per 512 images is 0.1 here. A light margin and
scale suit 64 easy classes.
"""

backbone = "MobileFaceNet"
embedding_size = 64
margin = (1.0, 0.2, 0.0)
scale = 16.0
sample_ratio = 1.0
fp16 = False

lr = 1.6
momentum = 0.9
weight_decay = 5e-4
train_unit = "step"
train_num = 120
warmup_num = 10
lr_decay_type = "piecewise"
decay_boundaries = (100,)
lr_decay = 0.1

data_format = "synthetic"
data_dir = "synthetic"
num_classes = 64
synthetic_images_per_class = 16
batch_size = 16
num_workers = 0
seed = 7

val_targets = ()
validation_interval_step = 0
log_interval_step = 10
visualdl = True
checkpoint_interval_step = 40
max_num_last_checkpoint = 2
output = "./output/tiny_cpu"
