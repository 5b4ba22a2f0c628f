"""DLSynthesize's engines (Qt-free): image synthesis on tensors and MRML nodes.

- :mod:`.superresolution`: self-supervised through-plane super-resolution of thick-slice volumes.
- :mod:`.logic`: the node-level API the Slicer module and the console use.
- :mod:`.cli`: ``meddl super-resolve`` and the demo part.
"""
