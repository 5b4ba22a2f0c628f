"""DLRegister's engines (Qt-free): deep-learning image registration on tensors and MRML nodes.

- :mod:`.optimisation`: instance optimisation (affine + DDF / SVF, LNCC / SSD / MI, masks, label term).
- :mod:`.space`, :mod:`.similarity`, :mod:`.fields`, :mod:`.quality`: the pieces it is built from.
- :mod:`.logic`: the node-level API the Slicer module and the console use.
- :mod:`.cli`: ``meddl register`` / ``meddl train-register``.
"""
