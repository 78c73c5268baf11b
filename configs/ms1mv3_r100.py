"""ArcFace, iResNet-100, MS1M-v3 (93,431 identities), Partial FC at sample_ratio 0.1, pure fp16.

The published arcface_paddle anchor (recognition/arcface_paddle/configs/ms1mv3_r100.py): the
schedule and optimiser of ms1mv3_r50.py (configs/base.py's defaults) with the deeper backbone.
"""

backbone = "FresResNet100"
sample_ratio = 0.1
fp16 = True
init_loss_scaling = 27648.0
output = "./output/ms1mv3_r100"
