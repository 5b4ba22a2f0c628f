"""MedDL Web: the four modules in a web browser (``meddl web``), built on trame-slicer.

- :mod:`.app`: the application (Slicer layout, file / sample loading, one panel per module), ``serve()``.
- :mod:`.panel`: a module's panel, built from its ``<Module>Lib/parameters.py`` settings; runs its jobs.
- :mod:`.samples`: the embedded MNI152 sample data, sized for the browser workflows.
- :mod:`.access`: who may use the server: the access token, one user at a time, what one message may hold.
- :mod:`.uploads`: files from the browser (checked names, size limit, a private folder) and result file names.

(What each panel shows and how a finished run is displayed: each module's ``<Module>Lib/frontend.py``.)

Imports trame only when used, so ``import DLCommon`` stays light.
"""
