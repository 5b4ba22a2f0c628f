"""DLClassify's Qt-free engine: output encodings, MONAI architectures, training, calibration, saliency,
standard-plane recognition and image-quality grading."""
