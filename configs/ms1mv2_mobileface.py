"""ArcFace, MobileFaceNet_128 (the published MobileFace layout), MS1M-v2 (85,742 identities),
full softmax (sample_ratio 1.0), fp32.

The published arcface_paddle anchor (recognition/arcface_paddle/configs/ms1mv2_mobileface.py):
128-D embedding, lr 0.1 per 512 images, momentum 0.9, weight decay 5e-4, 25 epochs with x0.1 at
epochs 10, 16 and 22, 128 images per GPU (configs/base.py's defaults).
"""

backbone = "MobileFaceNet_128"
embedding_size = 128
data_dir = "./MS1M_v2"
num_classes = 85742
output = "./output/ms1mv2_mobileface"
