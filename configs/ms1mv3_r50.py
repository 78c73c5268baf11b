"""ArcFace, iResNet-50, MS1M-v3 (93,431 identities), Partial FC at sample_ratio 0.1, pure fp16.

The published arcface_paddle anchor (deepinsight/insightface recognition/arcface_paddle/configs/
ms1mv3_r50.py and scripts/train_dynamic.sh): lr 0.1 per 512 images, momentum 0.9, weight decay
5e-4, 25 epochs with x0.1 at epochs 10, 16 and 22, 128 images per GPU, validation on lfw, cfp_fp
and agedb_30 every 2000 steps; fp16 with dynamic loss scaling from 27648. Everything not set here
is configs/base.py's default, which is this anchor's.
"""

backbone = "FresResNet50"
sample_ratio = 0.1
fp16 = True
init_loss_scaling = 27648.0
output = "./output/ms1mv3_r50"
