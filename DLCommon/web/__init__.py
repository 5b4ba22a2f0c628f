"""MedDL Web: the four modules in a web browser (``meddl web``), built on trame-slicer.

- :mod:`.app`: the application (Slicer layout, file / sample loading, one panel per module), ``serve()``.
- :mod:`.panel`: a module's panel, built from its ``<Module>Lib/parameters.py`` settings; runs its jobs.
- :mod:`.modules`: what each panel shows and how a finished run is displayed.
- :mod:`.samples`: the embedded MNI152 sample data, sized for the browser workflows.

Imports trame only when used, so ``import DLCommon`` stays light.
"""
