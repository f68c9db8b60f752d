"""Internals every layer uses: process settings (:mod:`.runtime`), Horovod (:mod:`.dist`), mixed precision
(:mod:`.amp`), atomic files (:mod:`.files`), the CUDA libraries of a CUDA build (:mod:`.cuda_libs`). Imports
nothing else of this package.
"""
