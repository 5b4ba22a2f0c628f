"""DLSegment's Qt-free engine: segmentation losses (the seed's four), training and inference."""
