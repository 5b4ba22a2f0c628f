"""DLSynthesize's engines (Qt-free): image synthesis on tensors and MRML nodes.

- :mod:`.superresolution`: self-supervised through-plane super-resolution of thick-slice volumes.
- :mod:`.imagetoimage`: paired image-to-image U-Net (2D slice-wise or 3D patch-wise).
- :mod:`.ultrasound`: B-mode ultrasound simulation from tissue labels or CT / MR and a probe pose.
- :mod:`.logic`: the node-level API the Slicer module and the console use.
- :mod:`.cli`: ``meddl super-resolve``, ``meddl simulate-us`` and the demo part.
"""
