"""DLSynthesize's engines (Qt-free): image synthesis on tensors and MRML nodes.

- :mod:`.superresolution`: self-supervised through-plane super-resolution of thick-slice volumes.
- :mod:`.imagetoimage`: paired image-to-image U-Net (2D slice-wise or 3D patch-wise).
- :mod:`.qualitytransfer`: image-quality transfer (3D patch regression from paired low / high resolution).
- :mod:`.pix2pix`: conditional GAN (U-Net generator, PatchGAN discriminator).
- :mod:`.denoise`: self-supervised denoising autoencoder (Recorrupted-to-Recorrupted) and anomaly map.
- :mod:`.ultrasound`: B-mode ultrasound simulation from tissue labels or CT / MR and a probe pose.
- :mod:`.logic`: the node-level API the Slicer module and the console use.
- :mod:`.cli`: ``meddl super-resolve``, ``train-synthesis``, ``synthesize``, ``simulate-us`` and the demo part.
"""
